package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// caller makes the demo agencies' requests to a demo gateway, each with a
// fresh token of its own signed with the agency's demo key.
type caller struct {
	client              *http.Client
	dir, base, audience string
}

// do sends one request as practitioner sub of partner in role and
// returns the status and the answer.
func (c caller) do(ctx context.Context, partner, sub, role, method, path string, body any) (int, map[string]any, error) {
	key, iss, err := protocol.ReadPrivateKey(filepath.Join(c.dir, "keys", partner+".jwk"))
	if err != nil {
		return 0, nil, err
	}
	tok, err := identity.Mint(key, identity.MintClaims{Issuer: iss, Subject: sub, Role: role, Audience: c.audience, Lifetime: time.Minute})
	if err != nil {
		return 0, nil, err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
	return resp.StatusCode, out, nil
}

// want is do, failing unless the answer has status code.
func (c caller) want(ctx context.Context, code int, partner, sub, role, method, path string, body any) (map[string]any, error) {
	st, out, err := c.do(ctx, partner, sub, role, method, path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s as %s/%s: %w", method, path, partner, sub, err)
	}
	if st != code {
		return nil, fmt.Errorf("%s %s as %s/%s: %d, not %d: %v", method, path, partner, sub, st, code, out)
	}
	return out, nil
}

// seedActivity gives a fresh demo the history the console shows at once
// (docs/console.md): for the README's child 9990000018, a share of the
// police's concerns with social care, a teacher's refused request of
// the GP, and a social worker's safeguarding override of the GP, whose
// review waits for an IG lead; and an early help episode opened by
// social care (sw-0042) with a team around the child — the police, the
// GP, CAMHS (a sensitive service, so shown only to itself) and an
// education welfare officer who has left — whose lead professional was
// first the GP and is now sw-0042.
func seedActivity(ctx context.Context, c caller) error {
	const child = "9990000018"
	if _, err := c.want(ctx, http.StatusOK, "exley-csc", "sw-0042", "social_worker", http.MethodPost, "/v1/decisions", map[string]any{
		"subject": child, "provider": "exley-police", "purpose": "safeguarding", "categories": []string{"police_concerns", "household"}}); err != nil {
		return err
	}
	if _, err := c.want(ctx, http.StatusOK, "exley-academy", "t-0007", "teacher", http.MethodPost, "/v1/decisions", map[string]any{
		"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"}}); err != nil {
		return err
	}
	if _, err := c.want(ctx, http.StatusOK, "exley-csc", "sw-0042", "social_worker", http.MethodPost, "/v1/decisions", map[string]any{
		"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"},
		"override_ground": "risk_of_significant_harm",
		"justification":   "Bruising seen at school on 20 November and an unexplained absence; strategy discussion held with police today."}); err != nil {
		return err
	}
	sw := func(code int, method, path string, body any) (map[string]any, error) {
		return c.want(ctx, code, "exley-csc", "sw-0042", "social_worker", method, path, body)
	}
	out, err := sw(http.StatusCreated, http.MethodPost, "/v1/early-help", map[string]any{"subject": child})
	if err != nil {
		return err
	}
	ep, _ := out["episode"].(map[string]any)
	id, _ := ep["id"].(string)
	for _, m := range [][3]string{
		{"riverside-gp", "gp-0101", "gp"}, {"exley-police", "ppu-0003", "police_officer"},
		{"exley-camhs", "cl-0007", "camhs_clinician"}, {"exley-education", "ewo-0005", "education_welfare_officer"},
	} {
		if _, err := sw(http.StatusOK, http.MethodPost, "/v1/early-help/"+id+"/team", map[string]any{"partner": m[0], "practitioner": m[1], "role": m[2]}); err != nil {
			return err
		}
	}
	for _, step := range []struct {
		path string
		body map[string]any
	}{
		{"/lead-professional", map[string]any{"partner": "riverside-gp", "practitioner": "gp-0101"}},
		{"/team/leave", map[string]any{"partner": "exley-education", "practitioner": "ewo-0005"}},
		{"/lead-professional", map[string]any{"partner": "exley-csc", "practitioner": "sw-0042"}},
	} {
		method := http.MethodPut
		if step.path == "/team/leave" {
			method = http.MethodPost
		}
		if _, err := sw(http.StatusOK, method, "/v1/early-help/"+id+step.path, step.body); err != nil {
			return err
		}
	}
	return nil
}
