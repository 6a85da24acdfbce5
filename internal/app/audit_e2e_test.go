package app_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/config"
)

const otherChild = "9990000026"

// auditGateway is a gateway that pushes its checkpoints to a directory
// outside the data directory (the witness), with a few decisions about
// two children already made.
func auditGateway(t *testing.T) (*gateway, string) {
	t.Helper()
	witness := filepath.Join(t.TempDir(), "witness")
	g := startGateway(t, func(c *config.Config) {
		c.Audit.CheckpointDir = witness
		c.Audit.CheckpointEvery = 1_000_000 // only on demand and at shutdown
	})
	for range 3 {
		decisionOf(t, g.decide("exley-csc", "social_worker", policeShare()))
	}
	// A refusal about the child, and decisions about another child.
	decisionOf(t, g.decide("exley-academy", "teacher", map[string]any{
		"subject": child, "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"},
	}))
	other := policeShare()
	other["subject"] = otherChild
	decisionOf(t, g.decide("exley-csc", "social_worker", other))
	decisionOf(t, g.decide("exley-csc", "social_worker", other))
	return g, witness
}

func (g *gateway) jwks() jwk.Set {
	g.t.Helper()
	r := g.do(http.MethodGet, "/.well-known/jwks.json", "", nil)
	set, err := jwk.Parse(r.Raw)
	if err != nil {
		g.t.Fatal(err)
	}
	return set
}

// get is do(GET) with a fresh token for partner's role, expecting 200.
func (g *gateway) get(partner, role, path string) response {
	g.t.Helper()
	r := g.do(http.MethodGet, path, g.token(partner, role), nil)
	if r.Status != http.StatusOK {
		g.t.Fatalf("GET %s as %s: %d %s", path, role, r.Status, r.Raw)
	}
	return r
}

// decodeInto decodes raw into v, which it first zeroes (a field absent
// from raw must not keep an earlier value).
func decodeInto[T any](t *testing.T, raw []byte, v *T) {
	t.Helper()
	var zero T
	*v = zero
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
}

func TestAuditEndpointsNeedTheirRoles(t *testing.T) {
	g, _ := auditGateway(t)
	for _, c := range []struct {
		path, role string
		status     int
	}{
		{"/v1/audit/entries", "social_worker", 403},
		{"/v1/audit/entries", "ig_lead", 403},
		{"/v1/audit/snapshot", "ig_lead", 403},
		{"/v1/audit/stats?by=decision", "team_manager", 403},
		{"/v1/audit/proofs/inclusion?seq=1", "social_worker", 403},
		{"/v1/subjects/" + child + "/access-report", "social_worker", 403},
		{"/v1/audit/checkpoints/latest", "social_worker", 200},
		{"/v1/audit/proofs/consistency?from=1", "team_manager", 200},
		{"/v1/subjects/" + child + "/access-report", "ig_lead", 200},
		{"/v1/audit/entries?purpose=gossip", "auditor", 400},
		{"/v1/audit/entries?kind=everything", "auditor", 400},
		{"/v1/audit/entries?subject=123", "auditor", 400},
		{"/v1/audit/entries?colour=red", "auditor", 400},
		{"/v1/audit/entries?limit=5000", "auditor", 400},
		{"/v1/audit/entries?from=yesterday", "auditor", 400},
		{"/v1/audit/stats", "auditor", 400},
		{"/v1/audit/proofs/inclusion?seq=0", "auditor", 400},
		{"/v1/audit/proofs/inclusion?seq=1&size=100000", "auditor", 400},
		{"/v1/audit/proofs/consistency?from=5&to=2", "auditor", 400},
	} {
		r := g.do(http.MethodGet, c.path, g.token("exley-csc", c.role), nil)
		if r.Status != c.status {
			t.Fatalf("GET %s as %s: %d, want %d: %s", c.path, c.role, r.Status, c.status, r.Raw)
		}
		if c.status == 400 && errorOf(t, r)["field"] == "" {
			t.Fatalf("GET %s: a 400 must name the field: %s", c.path, r.Raw)
		}
	}
	// Every one of those requests was recorded, refusals included.
	var refused, read int
	_ = g.app.Audit().Scan(context.Background(), 1, func(e *audit.Entry) error {
		if strings.HasPrefix(e.Path, "/v1/audit/") || strings.HasSuffix(e.Path, "/access-report") {
			switch e.Kind {
			case audit.KindRejected:
				refused++
			case audit.KindAccess:
				read++
			}
		}
		return nil
	})
	if refused != 16 || read != 3 {
		t.Fatalf("audited %d refused and %d reads of the audit endpoints, want 16 and 3", refused, read)
	}
}

type entriesPage struct {
	Entries    []audit.Entry `json:"entries"`
	NextCursor string        `json:"next_cursor"`
	Size       uint64        `json:"size"`
}

func TestAuditorQueries(t *testing.T) {
	g, _ := auditGateway(t)
	var p entriesPage
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/entries?subject="+child).Raw, &p)
	if len(p.Entries) != 4 {
		t.Fatalf("%d entries about the child, want 4: %+v", len(p.Entries), p.Entries)
	}
	pseudo := p.Entries[0].Subject
	for i, e := range p.Entries {
		if e.Subject != pseudo || e.Subject == child || len(e.Subject) != 64 {
			t.Fatalf("entry %d subject %q", e.Seq, e.Subject)
		}
		if i > 0 && e.Seq >= p.Entries[i-1].Seq {
			t.Fatal("not newest first")
		}
	}
	if p.Entries[0].Decision != "deny" || p.Entries[0].Requester != "exley-academy" {
		t.Fatalf("newest entry %+v", p.Entries[0])
	}
	// The query itself was recorded about the child: the next one sees it.
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/entries?subject="+child+"&limit=2").Raw, &p)
	if len(p.Entries) != 2 || p.Entries[0].Path != "/v1/audit/entries" || p.Entries[0].Role != "auditor" || p.Entries[0].Subject != pseudo || p.NextCursor == "" {
		t.Fatalf("first page %+v", p)
	}
	seen := []uint64{p.Entries[0].Seq, p.Entries[1].Seq}
	for p.NextCursor != "" {
		decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/entries?subject="+child+"&limit=2&cursor="+p.NextCursor).Raw, &p)
		for _, e := range p.Entries {
			seen = append(seen, e.Seq)
		}
	}
	if len(seen) != 5 { // 4 decisions and the first query (each query is recorded after it answers)
		t.Fatalf("paged through %v", seen)
	}
	// Filters combine.
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/entries?subject="+otherChild+"&kind=allow&requester=exley-csc&provider=exley-police&purpose=safeguarding").Raw, &p)
	if len(p.Entries) != 2 {
		t.Fatalf("other child's allowed shares: %d", len(p.Entries))
	}
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/entries?kind=deny").Raw, &p)
	if len(p.Entries) != 1 || p.Entries[0].Requester != "exley-academy" {
		t.Fatalf("denials: %+v", p.Entries)
	}
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/entries?practitioner=prac-teacher&from=2026-11-22&to=2026-11-23").Raw, &p)
	if len(p.Entries) != 1 {
		t.Fatalf("by practitioner and day: %+v", p.Entries)
	}
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/entries?to=2026-11-22").Raw, &p)
	if len(p.Entries) != 0 {
		t.Fatalf("before the test day: %+v", p.Entries)
	}

	var st struct {
		Stats audit.Stats `json:"stats"`
	}
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/stats?by=partner&from=2026-11-22").Raw, &st)
	byKey := map[string]audit.StatsRow{}
	for _, r := range st.Stats.Rows {
		byKey[r.Key] = r
	}
	if byKey["exley-csc"].Shares != 5 || byKey["exley-academy"].Denials != 1 {
		t.Fatalf("stats %+v", st.Stats.Rows)
	}

	// The clear NHS number is nowhere in the log file or its indexes.
	path := app.AuditPath(g.cfg.DataDir)
	g.stop()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{child, otherChild} {
		if bytes.Contains(raw, []byte(n)) {
			t.Fatalf("the NHS number %s is in the audit log file", n)
		}
	}
}

type checkpointView struct {
	JWS  string `json:"jws"`
	Size uint64 `json:"size"`
	Root string `json:"root"`
}

func TestCheckpointsAndProofs(t *testing.T) {
	g, witness := auditGateway(t)
	keys := g.jwks()
	var first struct {
		Checkpoint checkpointView `json:"checkpoint"`
	}
	decodeInto(t, g.get("exley-yos", "social_worker", "/v1/audit/checkpoints/latest").Raw, &first)
	cp1, err := audit.ParseCheckpoint([]byte(first.Checkpoint.JWS), keys)
	if err != nil {
		t.Fatalf("the latest checkpoint does not verify against /.well-known/jwks.json: %v", err)
	}
	if cp1.Size != 6 || cp1.Root != first.Checkpoint.Root {
		t.Fatalf("checkpoint %+v", cp1)
	}
	// The witness directory gets it too (pushed by the checkpointer).
	waitForFile(t, filepath.Join(witness, audit.CheckpointFileName(cp1.Size)))

	// An entry the latest checkpoint covers is proven against it.
	var inc struct {
		Checkpoint checkpointView       `json:"checkpoint"`
		Proof      audit.InclusionProof `json:"proof"`
	}
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/proofs/inclusion?seq=3").Raw, &inc)
	if inc.Checkpoint.JWS != cp1.JWS || audit.VerifyInclusion(&inc.Proof, nil, cp1.Root) != nil {
		t.Fatalf("proof of entry 3: %+v", inc)
	}
	// A newer entry: the gateway signs a new checkpoint for the proof.
	r := g.decide("exley-csc", "social_worker", policeShare())
	decisionOf(t, r)
	seq := uint64(r.Body["audit_seq"].(float64))
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/proofs/inclusion?seq="+itoa(seq)).Raw, &inc)
	cp2, err := audit.ParseCheckpoint([]byte(inc.Checkpoint.JWS), keys)
	if err != nil || cp2.Size < seq || inc.Proof.Size != cp2.Size {
		t.Fatalf("inclusion proof's checkpoint %+v (%v), proof size %d", cp2, err, inc.Proof.Size)
	}
	stored, err := g.app.Audit().Stored(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	hasher := rfc6962.DefaultHasher
	root, _ := hex.DecodeString(cp2.Root)
	var path [][]byte
	for _, h := range inc.Proof.Hashes {
		b, _ := hex.DecodeString(h)
		path = append(path, b)
	}
	if err := proof.VerifyInclusion(hasher, seq-1, cp2.Size, hasher.HashLeaf(stored), path, root); err != nil {
		t.Fatalf("the API's inclusion proof fails the RFC 9162 verifier: %v", err)
	}
	// A proof at an explicit size.
	decodeInto(t, g.get("exley-police", "ig_lead", "/v1/audit/proofs/inclusion?seq=6&size=6").Raw, &inc)
	if err := audit.VerifyInclusion(&inc.Proof, nil, cp1.Root); err != nil {
		t.Fatalf("proof at size 6 against the first checkpoint: %v", err)
	}

	// Consistency between the two signed checkpoints.
	var cons struct {
		Proof          audit.ConsistencyProof `json:"proof"`
		Checkpoint     checkpointView         `json:"checkpoint"`
		FromCheckpoint checkpointView         `json:"from_checkpoint"`
	}
	decodeInto(t, g.get("exley-police", "police_officer", "/v1/audit/proofs/consistency?from=6&to="+itoa(cp2.Size)).Raw, &cons)
	if err := audit.VerifyConsistency(&cons.Proof, cp1.Root, cp2.Root); err != nil {
		t.Fatalf("consistency 6→%d: %v", cp2.Size, err)
	}
	// The answer names the signed checkpoints its roots are from.
	if cons.Checkpoint.JWS != cp2.JWS || cons.FromCheckpoint.JWS != cp1.JWS ||
		cons.Proof.FromRoot != cp1.Root || cons.Proof.ToRoot != cp2.Root {
		t.Fatalf("consistency answer names checkpoints %q and %q", cons.FromCheckpoint.JWS, cons.Checkpoint.JWS)
	}
	// A size nobody signed is refused as the target.
	if r := g.do(http.MethodGet, "/v1/audit/proofs/consistency?from=6&to="+itoa(cp2.Size-1), g.token("exley-police", "police_officer"), nil); r.Status != 400 || !strings.Contains(string(r.Raw), `"to"`) {
		t.Fatalf("consistency to an unsigned size: %d %s", r.Status, r.Raw)
	}
}

// waitForFile polls (bounded) for a file the checkpointer writes from its
// own goroutine.
func waitForFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s was not written", path)
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

type accessReport struct {
	Report audit.AccessReport `json:"report"`
}

func TestAccessReportOverHTTP(t *testing.T) {
	g, _ := auditGateway(t)
	keys := g.jwks()
	for _, withhold := range []bool{false, true} {
		path := "/v1/subjects/" + child + "/access-report"
		if withhold {
			path += "?withhold_practitioners=true"
		}
		var ar accessReport
		decodeInto(t, g.get("exley-csc", "ig_lead", path).Raw, &ar)
		rep := ar.Report
		cp, err := audit.ParseCheckpoint([]byte(rep.Checkpoint), keys)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != rep.Size || cp.Root != rep.Root {
			t.Fatal("report root is not the checkpoint's")
		}
		// 4 decisions, plus the first report when reading the second.
		want := 4
		if withhold {
			want = 5
		}
		if len(rep.Entries) != want || !rep.Chain.Linked {
			t.Fatalf("report: %d entries, chain %+v", len(rep.Entries), rep.Chain)
		}
		kinds := map[string]int{}
		for _, re := range rep.Entries {
			e := re.Entry
			kinds[string(e.Kind)+":"+e.Decision]++
			if withhold && (e.Practitioner != "" || re.Stored != nil || e.InputResidual != nil || e.PrevPractitioner != 0) {
				t.Fatalf("family's copy names practitioner %q", e.Practitioner)
			}
			if !withhold && (e.Practitioner == "" || re.Stored == nil) {
				t.Fatalf("auditor's copy lacks the practitioner or stored bytes: %+v", re)
			}
			if e.Kind == audit.KindDecision && (e.Requester == "" || e.Purpose == "" || e.Provider == "") {
				t.Fatalf("recipient, provider or purpose missing: %+v", e)
			}
			if err := audit.VerifyInclusion(re.Proof, re.Stored, cp.Root); err != nil {
				t.Fatalf("entry %d: %v", e.Seq, err)
			}
		}
		if kinds["decision:allow"] != 3 || kinds["decision:deny"] != 1 {
			t.Fatalf("kinds %v", kinds)
		}
		if withhold && kinds["access:"] != 1 {
			t.Fatalf("the first report (an access about the child) is not in the second: %v", kinds)
		}
	}
}

func TestSnapshotWhileRunningAndOfflineVerify(t *testing.T) {
	g, witness := auditGateway(t)
	keys := g.jwks()
	// A checkpoint the witness keeps.
	var latest struct {
		Checkpoint checkpointView `json:"checkpoint"`
	}
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/checkpoints/latest").Raw, &latest)
	waitForFile(t, filepath.Join(witness, audit.CheckpointFileName(latest.Checkpoint.Size)))
	kept, err := os.ReadFile(filepath.Join(witness, audit.CheckpointFileName(latest.Checkpoint.Size)))
	if err != nil {
		t.Fatal(err)
	}

	// The live file is locked; the snapshot comes through the gateway.
	if _, err := audit.Verify(context.Background(), app.AuditPath(g.cfg.DataDir), audit.Options{OpenTimeout: 50 * time.Millisecond}); err == nil {
		t.Fatal("the live log opened while the gateway holds it")
	}
	r := g.get("exley-police", "auditor", "/v1/audit/snapshot")
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(snap, r.Raw, 0o600); err != nil {
		t.Fatal(err)
	}
	o := audit.VerifyOptions{Keys: keys, Checkpoints: []audit.ExternalCheckpoint{{Name: "witness", JWS: kept}}}
	rep, err := audit.VerifyFile(context.Background(), snap, o)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if rep.Entries < latest.Checkpoint.Size || !rep.SignaturesChecked || len(rep.External) != 1 {
		t.Fatalf("report %+v", rep)
	}
	// The snapshot request itself is in the snapshot (recorded first).
	l, err := audit.Open(snap, audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	last, err := l.Get(context.Background(), rep.Entries)
	l.Close()
	if err != nil || last.Path != "/v1/audit/snapshot" {
		t.Fatalf("last entry of the snapshot: %+v %v", last, err)
	}

	// Someone rewrites the copy's whole history with the package itself:
	// the witness's checkpoint catches it.
	forged := filepath.Join(t.TempDir(), "forged.db")
	in, _ := audit.Open(snap, audit.Options{ReadOnly: true})
	out, err := audit.Open(forged, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= rep.Entries; seq++ {
		e, _ := in.Get(context.Background(), seq)
		if e.Decision == "deny" {
			e.Decision = "allow"
		}
		if _, _, err := out.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	in.Close()
	out.Close()
	_, err = audit.VerifyFile(context.Background(), forged, o)
	var te *audit.TamperError
	if !errors.As(err, &te) || te.Seq != 1 || te.Checkpoint != latest.Checkpoint.Size {
		t.Fatalf("forged history: err = %v", err)
	}

	// At shutdown the gateway signs a last checkpoint and the witness
	// gets it.
	head, _ := g.app.Audit().Head()
	g.stop()
	b, err := os.ReadFile(filepath.Join(witness, "latest.jws"))
	if err != nil {
		t.Fatal(err)
	}
	final, err := audit.ParseCheckpoint(b, keys)
	if err != nil || final.Size != head {
		t.Fatalf("shutdown checkpoint %+v (%v), head %d", final, err, head)
	}
	rep, err = audit.VerifyFile(context.Background(), app.AuditPath(g.cfg.DataDir), audit.VerifyOptions{Keys: keys, Checkpoints: []audit.ExternalCheckpoint{{Name: "final", JWS: b}}})
	if err != nil || rep.Latest.Size != head {
		t.Fatalf("stopped gateway's log: %+v %v", rep, err)
	}
}
