package demo

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/childrens-trust/trustgate/internal/nhs"
)

// seedMarker records that the demo index was seeded (once per demo).
func seedMarker(dir string) string { return filepath.Join(dir, "data", "index-seeded") }

// demoCaseload is one demo agency's caseload: its practitioner and the
// involvements it syncs.
type demoCaseload struct {
	partner, practitioner, role string
	items                       []map[string]any
}

// seedCaseloads are the demo Trust's involvements: the README's child
// (9990000018) is known to social care (sw-0042, concerned), the police
// (concerned: a match), the GP and CAMHS (a shielded service, concerned);
// 9990000026 to social care and St Anne's; and 240 further synthetic
// children spread over the agencies.
func seedCaseloads() []demoCaseload {
	item := func(subject, practitioner, service, kind string, concern bool, start string) map[string]any {
		return map[string]any{"subject": subject, "practitioner": practitioner, "email": practitioner + "@exley.example",
			"service": service, "kind": kind, "concern": concern, "start": start + "T09:00:00Z"}
	}
	cs := []demoCaseload{
		{"exley-csc", "sw-0042", "social_worker", []map[string]any{
			item("9990000018", "sw-0042", "assessment-team", "child_in_need", true, "2026-09-14"),
			item("9990000026", "sw-0042", "assessment-team", "child_protection_plan", false, "2026-06-02"),
		}},
		{"exley-police", "ppu-0003", "police_officer", []map[string]any{
			item("9990000018", "ppu-0003", "public-protection", "child_protection_plan", true, "2026-10-03"),
		}},
		{"riverside-gp", "gp-0101", "gp", []map[string]any{
			item("9990000018", "gp-0101", "practice", "health", false, "2025-03-20"),
		}},
		{"exley-camhs", "cl-0007", "camhs_clinician", []map[string]any{
			item("9990000018", "cl-0007", "young-people", "mental_health", true, "2026-08-11"),
		}},
		{"st-annes-primary", "dsl-0002", "designated_safeguarding_lead", []map[string]any{
			item("9990000026", "dsl-0002", "pastoral", "education_welfare", false, "2026-01-12"),
		}},
	}
	// Further synthetic children (999 range), each known to two agencies.
	kinds := []struct{ partner, service, kind string }{
		{"exley-csc", "early-help-hub", "early_help"}, {"exley-education", "ews", "education_welfare"},
		{"exley-community-health", "health-visiting", "health"}, {"exley-yos", "prevention", "youth_justice"},
	}
	n := 0
	for i := 1000; n < 240; i++ {
		nine := fmt.Sprintf("999%06d", i)
		d, ok := nhs.CheckDigit(nine)
		if !ok {
			continue
		}
		child := nine + string(d)
		for _, k := range []int{n % len(kinds), (n + 1) % len(kinds)} {
			cs = addItem(cs, kinds[k].partner, func(practitioner string) map[string]any {
				return item(child, practitioner, kinds[k].service, kinds[k].kind, n%7 == 0, "2026-05-01")
			})
		}
		n++
	}
	return cs
}

// addItem adds an item (made for the caseload's practitioner) to
// partner's caseload, starting one if it has none.
func addItem(cs []demoCaseload, partner string, item func(practitioner string) map[string]any) []demoCaseload {
	for i := range cs {
		if cs[i].partner == partner {
			cs[i].items = append(cs[i].items, item(cs[i].practitioner))
			return cs
		}
	}
	return append(cs, demoCaseload{partner, "dp-0001", caseworkerRole[partner], []map[string]any{item("dp-0001")}})
}

// caseworkerRole is the role a demo agency's caseload is synced as: one the
// registry lets that agency hold (held_by), since a token asserting any other
// is refused.
var caseworkerRole = map[string]string{
	"exley-csc": "social_worker", "exley-education": "education_welfare_officer",
	"exley-community-health": "health_visitor", "exley-hospital": "paediatrician",
	"riverside-gp": "gp", "exley-police": "police_officer", "exley-probation": "probation_officer",
	"exley-yos": "yot_officer", "st-annes-primary": "designated_safeguarding_lead",
	"exley-academy": "designated_safeguarding_lead", "exley-college": "designated_safeguarding_lead",
	"exley-connexions": "connexions_adviser", "exley-district": "housing_officer",
	"exley-jcp": "work_coach", "safe-families": "support_worker",
	"exley-camhs": "camhs_clinician", "exley-sexual-health": "sexual_health_nurse",
}

// SeedIndex populates a fresh demo gateway's involvement index the way
// the agencies would: each syncs its caseload (PUT /v1/caseload) with a
// token of its own; then it records the history the console shows at
// once (seedActivity). It waits for the gateway to be ready, and runs once
// per demo (a marker under DIR/data): a later sync would end what the
// walk-throughs record.
func SeedIndex(ctx context.Context, dir, base, audience string) error {
	if _, err := os.Stat(seedMarker(dir)); err == nil {
		return nil
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for ready := false; !ready; {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
		if !ready {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	c := caller{client: client, dir: dir, base: base, audience: audience}
	for _, cl := range seedCaseloads() {
		if _, err := c.want(ctx, http.StatusOK, cl.partner, cl.practitioner, cl.role, http.MethodPut, "/v1/caseload", map[string]any{"involvements": cl.items}); err != nil {
			return fmt.Errorf("demo: seed the index: %s's caseload: %w", cl.partner, err)
		}
	}
	if err := seedActivity(ctx, c); err != nil {
		return fmt.Errorf("demo: seed the console's history: %w", err)
	}
	return os.WriteFile(seedMarker(dir), []byte("the demo agencies' caseloads were synced once\n"), 0o600)
}
