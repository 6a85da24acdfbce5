package policy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// baseOf is what an audit entry holds of in (as internal/whatif maps it).
func baseOf(in *policy.Input) policy.InputBase {
	b := policy.InputBase{
		TimeNS: in.TimeNS, Partner: in.Requester.Partner, Practitioner: in.Requester.Practitioner, Role: in.Requester.Role,
		Provider: in.Provider.Partner, Purpose: in.Purpose, Categories: in.Categories, OverrideGround: in.Override.Ground,
	}
	if len(b.Categories) == 0 {
		b.Categories = nil
	}
	return b
}

func roundTrip(t *testing.T, in *policy.Input, base policy.InputBase) []byte {
	t.Helper()
	r, err := policy.EncodeResidual(in, base)
	if err != nil {
		t.Fatalf("encode %+v: %v", in, err)
	}
	got, err := policy.DecodeResidual(base, r)
	if err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
	want, _ := json.Marshal(in)
	have, _ := json.Marshal(got)
	if !bytes.Equal(want, have) || !reflect.DeepEqual(in, got) {
		t.Fatalf("residual %s against %+v rebuilds\n%s\nnot\n%s", r, base, have, want)
	}
	return r
}

// The gateway's case: the base holds the input's own fields, and the
// residual holds only what the entry does not.
func TestResidualOfAGatewayDecision(t *testing.T) {
	in := &policy.Input{
		TimeNS:     1795348800123456789,
		Requester:  policy.Requester{Partner: "exley-csc", Type: "local_authority", Practitioner: "csc-sw-00417", Role: "social_worker"},
		Provider:   policy.Provider{Partner: "exley-police", Type: "police"},
		Purpose:    "safeguarding",
		Categories: []string{"police_concerns", "household"},
		Consents: []policy.Consent{{
			ID: "cns-8c763b38058b32a4ec12", Outcome: "given", GivenBy: "parent",
			Purposes: []string{"early_help"}, Categories: []string{"identity", "immunisations"},
			Recipients:  policy.Recipients{Partners: []string{"exley-csc"}, Types: []string{}, Protocols: []string{}},
			ValidFromNS: 1795000000987654321, ValidUntilNS: 1826884800000000000,
		}},
	}
	r := roundTrip(t, in, baseOf(in))
	const want = `["local_authority","police",[["cns-8c763b38058b32a4ec12","given","parent",0,["early_help"],["identity","immunisations"],["exley-csc"],[],[],1795000000.987654321,1826884800]]]`
	if string(r) != want {
		t.Fatalf("residual\n%s\nwant\n%s", r, want)
	}
	in.Consents = []policy.Consent{}
	if r := roundTrip(t, in, baseOf(in)); string(r) != `["local_authority","police"]` {
		t.Fatalf("without consents: %s", r)
	}
	in.Consents = nil
	if r := roundTrip(t, in, baseOf(in)); string(r) != `["local_authority","police",null]` {
		t.Fatalf("no consent source: %s", r)
	}
	in.Override = policy.Override{Ground: "risk_of_significant_harm", Justified: true}
	in.Provider.Sensitive = true
	if r := roundTrip(t, in, baseOf(in)); string(r) != `["local_authority","police",null,3]` {
		t.Fatalf("override: %s", r)
	}
}

// Whatever the base holds, the rebuilt input is exact: random inputs
// against random bases, nil and empty lists, fields that differ.
func TestResidualRoundTripsAnyInput(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 9))
	word := func() string {
		return []string{"", "a", "exley-csc", "<&>\u2028", "é😀", `q"\`, "safeguarding"}[r.IntN(7)]
	}
	list := func() []string {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		out := make([]string, 1+r.IntN(3))
		for i := range out {
			out[i] = word()
		}
		return out
	}
	instant := func() int64 {
		return []int64{0, 1, -1, 1795348800123456789, 1 << 62, -(1 << 62), 1<<63 - 1, -1 << 63, -999_999_999, 1e9, -1e9, 10}[r.IntN(12)]
	}
	for range 5000 {
		in := &policy.Input{
			TimeNS:     instant(),
			Requester:  policy.Requester{Partner: word(), Type: word(), Practitioner: word(), Role: word()},
			Provider:   policy.Provider{Partner: word(), Type: word(), Sensitive: r.IntN(2) == 0},
			Purpose:    word(),
			Categories: list(),
			Override:   policy.Override{Ground: word(), Justified: r.IntN(2) == 0},
		}
		switch r.IntN(3) {
		case 0:
			in.Consents = nil
		case 1:
			in.Consents = []policy.Consent{}
		default:
			for range 1 + r.IntN(3) {
				in.Consents = append(in.Consents, policy.Consent{
					ID: word(), Outcome: word(), GivenBy: word(), Competent: r.IntN(2) == 0,
					Purposes: list(), Categories: list(),
					Recipients:  policy.Recipients{Partners: list(), Types: list(), Protocols: list()},
					ValidFromNS: instant(), ValidUntilNS: instant(), WithdrawnNS: instant(),
				})
			}
		}
		base := baseOf(in)
		if r.IntN(2) == 0 { // a base that differs from the input
			other := policy.Input{TimeNS: instant(), Requester: policy.Requester{Partner: word(), Practitioner: word(), Role: word()},
				Provider: policy.Provider{Partner: word()}, Purpose: word(), Categories: list(), Override: policy.Override{Ground: word()}}
			base = baseOf(&other)
		}
		roundTrip(t, in, base)
	}
}

func TestResidualRefusals(t *testing.T) {
	in := &policy.Input{Requester: policy.Requester{Practitioner: "a\xffb"}}
	if _, err := policy.EncodeResidual(in, policy.InputBase{}); !errors.Is(err, policy.ErrResidual) {
		t.Fatalf("invalid UTF-8 encoded: %v", err)
	}
	for _, bad := range []string{``, `[]`, `["a"]`, `{}`, `["a","b",[],0,{},1]`, `[1,"b"]`, `["a","b"] []`, `["a","b",[["a"]]]`,
		`["a","b",[["a","given","parent",2,[],[],[],[],[],0]]]`, `["a","b",[["a","given","parent",0,[],[],[],[],[],0,0,0,0]]]`,
		`["a","b",[["a","given","parent",0,[],[],[],[],[],1.50]]]`, `["a","b",[["a","given","parent",0,[],[],[],[],[],-0]]]`,
		`["a","b",[["a","given","parent",0,[],[],[],[],[],1e9]]]`, `["a","b",[["a","given","parent",0,[],[],[],[],[],9223372036.854775808]]]`,
		`["a","b",[["a","given","parent",0,[],[],[],[],[],"1"]]]`, `["a","b",[],4]`, `["a","b",[],0,{"zz":1}]`, `["a","b",[],0,{"cat":"x"}]`,
		`["a","b",[],0,{"t":01}]`} {
		if _, err := policy.DecodeResidual(policy.InputBase{}, []byte(bad)); !errors.Is(err, policy.ErrResidual) {
			t.Errorf("DecodeResidual(%s) = %v", bad, err)
		}
	}
	if !strings.Contains(policy.ErrResidual.Error(), "residual") {
		t.Fatal(policy.ErrResidual)
	}
}

// FuzzDecodeResidual: any bytes decode or fail cleanly, and what
// decodes is what encoding/json reads in them: re-encoded and decoded
// again, the same Input.
func FuzzDecodeResidual(f *testing.F) {
	for _, s := range []string{`["local_authority","police"]`, `["a","b",null,3]`, `["a","b",[],0,{"t":1.5,"cat":null,"rp":"x"}]`,
		`["l\u00e9","p",[["cns-1","given","parent",1,null,[],["a"],[],["isp"],1795000000.987654321,-1.5,7]]]`, ` [ "a" , "b" ] `} {
		f.Add([]byte(s))
	}
	base := policy.InputBase{TimeNS: 5, Partner: "exley-csc", Categories: []string{"x"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := policy.DecodeResidual(base, b)
		if err != nil {
			if !errors.Is(err, policy.ErrResidual) {
				t.Fatalf("error %v is not ErrResidual", err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("decoded invalid JSON %q", b)
		}
		r, err := policy.EncodeResidual(in, base)
		if err != nil {
			return // a string that is not valid UTF-8 after decoding escapes
		}
		again, err := policy.DecodeResidual(base, r)
		if err != nil || !reflect.DeepEqual(in, again) {
			t.Fatalf("%q decoded as %+v, re-encoded %s, decoded again %+v, %v", b, in, r, again, err)
		}
	})
}
