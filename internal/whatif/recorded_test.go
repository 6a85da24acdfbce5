package whatif

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/decision"
	"github.com/childrens-trust/trustgate/internal/decision/decisiontest"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// decisionEntry is the audit entry the gateway writes for a decision on
// in (internal/server: the request's time is the decision's), before its
// outcome and input are recorded.
func decisionEntry(in *policy.Input, i int) *audit.Entry {
	return &audit.Entry{
		Time: time.Unix(0, in.TimeNS).UTC(), RequestID: fmt.Sprintf("%024x", i), Kind: audit.KindDecision,
		Method: "POST", Path: "/v1/decisions", Status: 200,
		Requester: in.Requester.Partner, Practitioner: in.Requester.Practitioner, Role: in.Requester.Role,
		TokenID: fmt.Sprintf("jti-%016x", i), Provider: in.Provider.Partner, Purpose: in.Purpose,
		Subject: fmt.Sprintf("%064x", uint64(i%40_000+1)*0x9e3779b97f4a7c15), Categories: in.Categories,
		OverrideGround: in.Override.Ground, Decision: "deny",
	}
}

// Decisions recorded in a real audit log come back as exactly the inputs
// they were decided on, and a replay from the log is exactly the brute
// force over those inputs.
func TestInputsRebuiltFromARealLog(t *testing.T) {
	ctx := context.Background()
	base := decisiontest.NewTrust(t)
	serving, err := revision.Build(ctx, base.Src, periodFrom, "test")
	if err != nil {
		t.Fatal(err)
	}
	g := decisiontest.NewGenerator(serving.Registry, 17, 200, periodFrom.Add(-24*time.Hour), periodTo.Add(24*time.Hour))
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.db"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	const n = 1500
	var recs []Record
	var inputs []policy.Input
	for i := range n {
		in := g.Next()
		switch i % 7 {
		case 0: // a gateway without a consent source
			in.Consents = nil
		case 1: // a time with nanoseconds
			in.TimeNS += 123_456_789
		}
		d, err := serving.Policy.Decide(ctx, &in)
		if err != nil {
			t.Fatal(err)
		}
		e := decisionEntry(&in, i)
		if d.Allow {
			e.Decision, e.AllowedCategories = "allow", d.Categories
			e.Protocol, e.ProtocolVersion, e.Rule = d.Protocol.ID, d.Protocol.Version, d.Protocol.Rule
		}
		e.Reasons = d.Reasons
		if err := decision.RecordInput(e, &in); err != nil {
			t.Fatal(err)
		}
		// The residual holds no differences from the entry (its fifth
		// member): nothing the entry holds is stored twice.
		var members []json.RawMessage
		if err := json.Unmarshal(e.InputResidual, &members); err != nil || len(members) > 4 {
			t.Fatalf("the residual repeats what the entry holds: %s", e.InputResidual)
		}
		seq, _, err := l.Append(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(in)
		recs = append(recs, Record{Seq: seq, Input: raw, Was: OutcomeOf(d)})
		inputs = append(inputs, in)
	}
	// An entry that records no input (not a decision) and one from before
	// inputs were recorded.
	if _, _, err := l.Append(ctx, &audit.Entry{Time: periodFrom.Add(time.Hour), Kind: audit.KindAccess}); err != nil {
		t.Fatal(err)
	}
	old := decisionEntry(&inputs[0], n)
	old.Time = periodFrom.Add(2 * time.Hour)
	seq, _, err := l.Append(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs, Record{Seq: seq})

	for i, want := range inputs {
		e, err := l.Get(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		got, err := decision.InputOf(e)
		if err != nil {
			t.Fatal(err)
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got)
		if !bytes.Equal(wb, gb) || !reflect.DeepEqual(&want, got) {
			t.Fatalf("seq %d (residual %s):\nrebuilt  %s\nrecorded %s", e.Seq, e.InputResidual, gb, wb)
		}
	}
	if e, _ := l.Get(ctx, seq); e != nil {
		if _, err := decision.InputOf(e); !errors.Is(err, decision.ErrNoInput) {
			t.Fatalf("an entry without an input: %v", err)
		}
	}
	bad := decisionEntry(&inputs[0], 0)
	bad.InputResidual = audit.Residual(`["local_authority"]`)
	if _, err := decision.InputOf(bad); !errors.Is(err, policy.ErrResidual) {
		t.Fatalf("a residual that does not decode: %v", err)
	}

	recent, err := RecentInputs(l, 5)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 5 || recent[0].Seq != n || !reflect.DeepEqual(recent[0].Input, inputs[n-1]) {
		t.Fatalf("recent inputs: %d, first seq %d", len(recent), recent[0].Seq)
	}

	// The replay from the log is the brute force over the inputs.
	tr := decisiontest.NewTrust(t)
	tr.Edit(t, "protocols/safeguarding.yaml", "categories: [police_concerns, household]", "categories: [police_concerns]")
	tr.Edit(t, "protocols/safeguarding.yaml", "      household: [members, risks]\n", "")
	prop := tr.Proposal(t, periodFrom)
	for _, noMemo := range []bool{false, true} {
		rep, err := Replay(ctx, prop.Policy, prop.PolicySources(), AuditSource(l), Options{From: periodFrom, To: periodTo, Workers: 2, NoMemo: noMemo})
		if err != nil {
			t.Fatal(err)
		}
		sameReport(t, rep, bruteForce(t, prop.Policy, recs, 5))
		if rep.Changed == 0 || rep.Unrecorded != 1 {
			t.Fatalf("%s", rep.Summary())
		}
	}
}

// A decision's time is its entry's: an entry without a time cannot
// record an input.
func TestRecordInputNeedsTheEntryTime(t *testing.T) {
	in := policy.Input{Requester: policy.Requester{Partner: "exley-csc"}}
	e := decisionEntry(&in, 1)
	e.Time = time.Time{}
	if err := decision.RecordInput(e, &in); err == nil {
		t.Fatal("recorded an input on an entry without a time")
	}
	e.Time = time.Unix(0, 5).UTC()
	e.Practitioner = "\xff"
	if err := decision.RecordInput(e, &in); !errors.Is(err, policy.ErrResidual) {
		t.Fatalf("invalid UTF-8: %v", err)
	}
}
