package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// TestDemoRunSharesARecordEndToEnd is `make run` in one test: demo init,
// then demo run (the gateway and a reference provider per demo agency on
// the registry's ports 9101–9118), then the first printed request — a
// share request that returns a minimised record and notifies the police.
func TestDemoRunSharesARecordEndToEnd(t *testing.T) {
	g := startCLIDemo(t, func(dir string) []string { return []string{"demo", "run", "--dir", dir} })
	dir, base, out := g.dir, g.base, g.out
	token := func(partner, sub, role string) string {
		key, _, err := protocol.ReadPrivateKey(filepath.Join(dir, "keys", partner+".jwk"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := identity.Mint(key, identity.MintClaims{Issuer: partner, Subject: sub, Role: role, IssuedAt: time.Now(), Lifetime: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	call := func(method, path, tok string, body []byte) (int, map[string]any) {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	status, body := call(http.MethodPost, "/v1/share-requests", token("exley-csc", "sw-0042", "social_worker"),
		[]byte(`{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns","household"]}`))
	if status != 200 {
		t.Fatalf("the first printed request: %d %v", status, body)
	}
	cats := body["record"].(map[string]any)["categories"].(map[string]any)
	pc := cats["police_concerns"].(map[string]any)
	if len(cats) != 2 || len(pc) != 4 || pc["intelligence_notes"] != nil {
		t.Fatalf("record not minimised: %v", cats)
	}
	status, body = call(http.MethodGet, "/v1/notifications", token("exley-police", "ppu-0003", "police_officer"), nil)
	disclosed := 0
	for _, n := range body["notifications"].([]any) {
		if n.(map[string]any)["event"] == "record_disclosed" {
			disclosed++
		}
	}
	if status != 200 || disclosed != 1 {
		t.Fatalf("the police's notifications: %d %v", status, body)
	}

	// The demo index is populated once the agencies' caseloads are synced;
	// the README's lookup shows the team around the child, not CAMHS.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "data", "index-seeded")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo index was never seeded: %s", out.String())
		}
	}
	status, body = call(http.MethodGet, "/v1/subjects/9990000018/involvements", token("exley-csc", "sw-0042", "social_worker"), nil)
	var partners []string
	for _, v := range body["involvements"].([]any) {
		partners = append(partners, v.(map[string]any)["partner"].(string))
	}
	slices.Sort(partners)
	if status != 200 || !slices.Equal(partners, []string{"exley-csc", "exley-police", "riverside-gp"}) {
		t.Fatalf("the README's lookup: %d %v", status, body)
	}
}
