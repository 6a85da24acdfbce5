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
	e.InputResidual = json.RawMessage(decisionInput)
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

func TestScanEntryRawValues(t *testing.T) {
	accept := map[string]string{
		"object":        decisionInput,
		"empty object":  `{}`,
		"array":         `[1,"a",true,null,{"x":[]}]`,
		"string":        `"x\u00e9"`,
		"numbers":       `[0,-1,1.5,-0.25e+3,2E-2,10]`,
		"literals":      `[true,false,null]`,
		"whitespace":    "{ \"a\" : [ 1 , 2 ] }",
		"nested object": `{"a":{"b":{"c":{}}}}`,
	}
	for name, v := range accept {
		t.Run("accepts "+name, func(t *testing.T) {
			b := []byte(`{"n":1,"x":` + v + `}`)
			if _, err := scanEntry(b); err != nil {
				t.Fatalf("scanEntry(%s): %v", b, err)
			}
			if _, err := strictDecode(b); err != nil {
				t.Fatalf("the strict decode rejects what the scanner accepts: %v", err)
			}
		})
	}
	reject := map[string]string{
		"missing value":   ``,
		"leading zero":    `01`,
		"bare fraction":   `.5`,
		"empty fraction":  `1.`,
		"empty exponent":  `1e`,
		"unquoted key":    `{a:1}`,
		"trailing comma":  `[1,]`,
		"object comma":    `{"a":1,}`,
		"missing colon":   `{"a" 1}`,
		"unterminated":    `[1,2`,
		"bad literal":     `nul`,
		"control in text": "\"a\x01\"",
		"too deep":        deep(maxDepth + 2),
	}
	for name, v := range reject {
		t.Run("rejects "+name, func(t *testing.T) {
			b := []byte(`{"n":1,"x":` + v + `}`)
			if _, err := scanEntry(b); err == nil {
				t.Fatalf("scanEntry accepted %q", b)
			}
		})
	}
}

func deep(n int) string {
	s := ""
	for range n {
		s += "["
	}
	for range n {
		s += "]"
	}
	return s
}

// Whatever encoding/json writes for an input (it compacts a raw value and
// escapes HTML characters in it), the scanner accepts.
func TestScanEntryAcceptsMarshalledInputs(t *testing.T) {
	for _, in := range []string{decisionInput, `{ "a" : "<&>` + "\u2028é" + `", "b": [1.5e3, null, -0] }`, `[]`, `"x"`, `12`} {
		e := Entry{Seq: 2, PrevHash: GenesisHash, Kind: KindDecision, InputResidual: json.RawMessage(in)}
		b := marshal(t, e)
		if _, err := scanEntry(b); err != nil {
			t.Fatalf("scanEntry(%s): %v", b, err)
		}
		got, err := strictDecode(b)
		if err != nil {
			t.Fatal(err)
		}
		var x, y any
		if json.Unmarshal(got.InputResidual, &x) != nil || json.Unmarshal([]byte(in), &y) != nil {
			t.Fatalf("input %s read back as %s", in, got.InputResidual)
		}
	}
}
