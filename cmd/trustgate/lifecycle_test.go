package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/decision"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// TestPolicyTools runs the IG lead's tools as a review pipeline would:
// each exits 0 on a clean input and 1, naming the file and line, on a
// broken one.
func TestPolicyTools(t *testing.T) {
	dir := t.TempDir()
	if code, out := runCLI(t, "demo", "init", "--dir", dir); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	pols := filepath.Join(dir, "policies")
	if code, out := runCLI(t, "policy", "export", pols); code != 0 || !strings.Contains(out, "samples.yaml") {
		t.Fatalf("policy export: %d %s", code, out)
	}
	if code, _ := runCLI(t, "policy", "export", pols); code == 0 {
		t.Fatal("policy export overwrote the policies")
	}
	protocols := filepath.Join(dir, "protocols")

	code, out := runCLI(t, "policy", "test", pols)
	if code != 0 || !strings.Contains(out, "PASS  sharing_test.rego:") || !strings.Contains(out, "coverage: ") || !strings.Contains(out, "0 failed") {
		t.Fatalf("policy test: %d\n%s", code, out)
	}
	code, out = runCLI(t, "policy", "check", pols, "--protocols", protocols, "--at", "2026-11-22")
	if code != 0 || !strings.Contains(out, "passes every check") || !strings.Contains(out, "PASS    police concerns to the social worker") {
		t.Fatalf("policy check: %d\n%s", code, out)
	}

	// A failing test: exit 1, the test named with its file and line.
	test := filepath.Join(pols, "extra_test.rego")
	writeText(t, test, "package trustgate.extra_test\n\nimport rego.v1\n\ntest_never if {\n\t1 == 2\n}\n")
	code, out = runCLI(t, "policy", "test", "-q", pols)
	if code != exitFailure || !strings.Contains(out, "FAIL  extra_test.rego:5  trustgate.extra_test.test_never") {
		t.Fatalf("policy test with a failing test: %d\n%s", code, out)
	}
	code, out = runCLI(t, "policy", "check", pols, "--protocols", protocols, "--at", "2026-11-22")
	if code != exitFailure || !strings.Contains(out, "tests: extra_test.rego:5: trustgate.extra_test.test_never: FAIL") {
		t.Fatalf("policy check with a failing test: %d\n%s", code, out)
	}
	os.Remove(test)

	// A syntax error: exit 1 with file:line.
	writeText(t, filepath.Join(pols, "extra.rego"), "package trustgate.extra\n\nimport rego.v1\n\nx := {\n")
	code, out = runCLI(t, "policy", "test", pols)
	if code != exitFailure || !strings.Contains(out, "extra.rego:") {
		t.Fatalf("policy test with a syntax error: %d\n%s", code, out)
	}
	code, out = runCLI(t, "policy", "check", pols, "--protocols", protocols)
	if code != exitFailure || !strings.Contains(out, "compile: extra.rego:") {
		t.Fatalf("policy check with a syntax error: %d\n%s", code, out)
	}
}

func TestProtocolLintAndWithdraw(t *testing.T) {
	dir := t.TempDir()
	if code, out := runCLI(t, "demo", "init", "--dir", dir); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	protocols := filepath.Join(dir, "protocols")
	sg := filepath.Join(protocols, "safeguarding.yaml")
	if code, out := runCLI(t, "protocol", "lint", sg, "--at", "2026-11-22"); code != 0 || !strings.Contains(out, "no errors") {
		t.Fatalf("lint: %d\n%s", code, out)
	}
	doc, err := os.ReadFile(sg)
	if err != nil {
		t.Fatal(err)
	}
	draft := filepath.Join(protocols, "draft.yml")
	bad := strings.Replace(string(doc), "purposes: [safeguarding, child_protection]\n", "purposes: [safeguarding, child_protection, burglary]\n", 1)
	writeText(t, draft, bad)
	code, out := runCLI(t, "protocol", "lint", draft)
	if code != exitFailure || !strings.Contains(out, `error: `+draft+`:`) || !strings.Contains(out, `unknown purpose "burglary" (purposes[2])`) {
		t.Fatalf("lint an unknown purpose: %d\n%s", code, out)
	}
	writeText(t, draft, strings.Replace(string(doc), "expires: 2028-01-01", "expires: 2025-01-01", 1))
	code, out = runCLI(t, "protocol", "lint", draft)
	if code != exitFailure || !strings.Contains(out, "expires: 2025-01-01 is not after effective_from") {
		t.Fatalf("lint dates out of order: %d\n%s", code, out)
	}
	os.Remove(draft)

	// A signatory withdraws with effect now: the protocol is no longer in force.
	code, out = runCLI(t, "protocol", "withdraw", "--key", filepath.Join(dir, "keys", "exley-police.jwk"), "--effective", "now", sg)
	if code != 0 || !strings.Contains(out, "exley-police withdraws from") {
		t.Fatalf("withdraw: %d\n%s", code, out)
	}
	if _, err := os.Stat(sg + ".withdrawals.json"); err != nil {
		t.Fatal(err)
	}
	code, out = runCLI(t, "protocol", "verify", sg)
	if code != exitFailure || !strings.Contains(out, "not in force: withdrawn by exley-police from") {
		t.Fatalf("verify after the withdrawal: %d\n%s", code, out)
	}
	code, out = runCLI(t, "protocol", "withdraw", "--key", filepath.Join(dir, "keys", "exley-jcp.jwk"), "--effective", "2027-01-01", sg)
	if code != exitFailure || !strings.Contains(out, "not a signatory") {
		t.Fatalf("withdraw by a non-signatory: %d\n%s", code, out)
	}
	if code, _ := runCLI(t, "protocol", "withdraw", "--key", filepath.Join(dir, "keys", "exley-csc.jwk"), sg); code != exitUsage {
		t.Fatalf("withdraw without --effective: %d", code)
	}
}

func writeText(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyWhatIf replays a recorded log against an edited protocol.
func TestPolicyWhatIf(t *testing.T) {
	dir := t.TempDir()
	if code, out := runCLI(t, "demo", "init", "--dir", dir); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	protocols := filepath.Join(dir, "protocols")
	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	rev, err := revision.Build(context.Background(), revision.Sources{ProtocolsDir: protocols, Settings: policy.Settings{OverrideReviewDays: 5}}, at, "test")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "audit.db")
	l, err := audit.Open(db, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		in := policy.Input{
			TimeNS:     at.Add(time.Duration(i) * time.Hour).UnixNano(),
			Requester:  policy.Requester{Partner: "exley-csc", Type: "local_authority", Practitioner: "p1", Role: "social_worker"},
			Provider:   policy.Provider{Partner: "exley-police", Type: "police"},
			Purpose:    "safeguarding",
			Categories: []string{"police_concerns", "household"},
			Consents:   []policy.Consent{},
		}
		d, err := rev.Policy.Decide(context.Background(), &in)
		if err != nil || !d.Allow {
			t.Fatalf("decide: %v %+v", err, d)
		}
		e := &audit.Entry{Time: time.Unix(0, in.TimeNS).UTC(), Kind: audit.KindDecision, Decision: "allow", AllowedCategories: d.Categories,
			Protocol: d.Protocol.ID, ProtocolVersion: d.Protocol.Version, Rule: d.Protocol.Rule,
			Requester: in.Requester.Partner, Practitioner: in.Requester.Practitioner, Role: in.Requester.Role,
			Provider: in.Provider.Partner, Purpose: in.Purpose, Categories: in.Categories}
		if err := decision.RecordInput(e, &in); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	sg := filepath.Join(protocols, "safeguarding.yaml")
	doc, _ := os.ReadFile(sg)
	edited := strings.Replace(strings.Replace(string(doc), "categories: [police_concerns, household]", "categories: [police_concerns]", 1), "      household: [members, risks]\n", "", 1)
	writeText(t, sg, edited)

	code, out := runCLI(t, "policy", "whatif", "--protocols", protocols, "--db", db, "--from", "2026-11-19", "--to", "2026-11-21")
	if code != 0 || !strings.Contains(out, "6 decisions replayed") || !strings.Contains(out, "narrowed 6") ||
		!strings.Contains(out, "narrowed  isp-safeguarding v3 police-to-social-care  safeguarding  6      1, 2, 3, 4, 5") ||
		!strings.Contains(out, "isp-safeguarding v3 (safeguarding.yaml): replayed as if signed") {
		t.Fatalf("whatif: %d\n%s", code, out)
	}
	code, out = runCLI(t, "policy", "whatif", "--protocols", protocols, "--db", db, "--since", "30 days")
	if code != exitUsage {
		t.Fatalf("whatif with a bad period: %d\n%s", code, out)
	}
	code, out = runCLI(t, "policy", "whatif", "--protocols", protocols, "--db", db, "--assume-signed=false", "--from", "2026-11-19", "--to", "2026-11-21")
	if code != 0 || !strings.Contains(out, "allow_to_deny 6") || !strings.Contains(out, "NOT replayed: bad signature from") {
		t.Fatalf("whatif without assuming signatures: %d\n%s", code, out)
	}
}

// TestPolicyCheckOfANewTrust: a Trust that has not written samples of its
// own is told plainly that the shipped samples are the demo Trust's; the
// demo Trust is not.
func TestPolicyCheckOfANewTrust(t *testing.T) {
	dir := t.TempDir()
	if code, out := runCLI(t, "demo", "init", "--dir", dir); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	demoProtocols := filepath.Join(dir, "protocols")
	reg, err := os.ReadFile(filepath.Join(demoProtocols, "trust.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	newTrust := filepath.Join(t.TempDir(), "protocols")
	os.MkdirAll(newTrust, 0o755)
	os.Symlink(filepath.Join(demoProtocols, "keys"), filepath.Join(newTrust, "keys"))
	writeText(t, filepath.Join(newTrust, "trust.yaml"), strings.Replace(string(reg), "\nid: exley-childrens-trust\n", "\nid: newtown-childrens-trust\n", 1))
	samples := func(protocols string) string {
		code, out := runCLI(t, "policy", "check", "--protocols", protocols)
		if code != 0 {
			t.Fatalf("policy check --protocols %s: %d\n%s", protocols, code, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "samples ") {
				return l
			}
		}
		t.Fatalf("no samples step:\n%s", out)
		return ""
	}
	if l := samples(newTrust); !strings.Contains(l, "these are the samples of exley-childrens-trust") || !strings.Contains(l, "newtown-childrens-trust, which has no sample decisions of its own") {
		t.Errorf("a new Trust's check: %s", l)
	}
	if l := samples(demoProtocols); strings.Contains(l, "of its own") {
		t.Errorf("the demo Trust's check: %s", l)
	}
}
