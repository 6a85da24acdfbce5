package audit

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
)

// decisionInput is the residual of a decision's policy input as the
// gateway records it (policy.EncodeResidual: no NHS number, no record
// content).
const decisionInput = `{"rt":"local_authority","pt":"police","c":[{"i":"cns-1","o":"given","g":"parent","p":["early_help"],"c":["immunisations"],"rp":["exley-csc"],"f":1790000000000000000}]}`

// The recorded input residual survives the stored encoding, the fast
// scanner and a full verification, byte for byte.
func TestDecisionInputIsStoredAndVerified(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := TypicalEntry(1)
	e.InputResidual = Residual(decisionInput)
	seq, _, err := l.Append(context.Background(), &e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Get(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.InputResidual) != decisionInput {
		t.Fatalf("input read back as %s", got.InputResidual)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), path, Options{}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

// The residual is stored as a JSON string of its text: the scanner
// accepts any string there and nothing else.
func TestScanEntryResidualValues(t *testing.T) {
	for name, v := range map[string]string{
		"object": decisionInput, "empty": ``, "escapes": "x\u00e9\n\"", "not JSON": `{[`,
	} {
		t.Run("accepts "+name, func(t *testing.T) {
			q, _ := json.Marshal(v)
			b := []byte(`{"input_residual":` + string(q) + `,"seq":1}`)
			if _, err := scanEntry(b); err != nil {
				t.Fatalf("scanEntry(%s): %v", b, err)
			}
			if _, err := strictDecode(b); err != nil {
				t.Fatalf("the strict decode rejects what the scanner accepts: %v", err)
			}
		})
	}
	for name, v := range map[string]string{
		"object": `{}`, "array": `[1]`, "number": `12`, "literal": `true`, "missing value": ``, "control in text": "\"a\x01\"",
	} {
		t.Run("rejects "+name, func(t *testing.T) {
			b := []byte(`{"input_residual":` + v + `,"seq":1}`)
			if _, err := scanEntry(b); err == nil {
				t.Fatalf("scanEntry accepted %q", b)
			}
		})
	}
}

// Whatever the residual's text, the stored form carries it exactly.
func TestScanEntryAcceptsMarshalledInputs(t *testing.T) {
	for _, in := range []string{decisionInput, `{ "a" : "<&>` + "\u2028é" + `", "b": [1.5e3, null, -0] }`, `[]`, `"x"`, `12`} {
		e := Entry{Seq: 2, PrevHash: GenesisHash, Kind: KindDecision, InputResidual: Residual(in)}
		b := marshal(t, e)
		if _, err := scanEntry(b); err != nil {
			t.Fatalf("scanEntry(%s): %v", b, err)
		}
		got, err := strictDecode(b)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.InputResidual) != in {
			t.Fatalf("input %s read back as %s", in, got.InputResidual)
		}
	}
}
