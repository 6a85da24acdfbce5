package decision

import (
	"strings"
	"testing"

	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/policies"
)

func TestAnalyze(t *testing.T) {
	demo, err := policy.LoadFS(policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	a := Analyze(demo)
	if !a.Memo || !a.ConsentTimes || !a.OpaqueIDs || a.Practitioner {
		t.Fatalf("the demo policies: %+v", a)
	}
	head := "package trustgate.sharing\n\nimport rego.v1\n\n"
	cases := []struct {
		name, rego string
		check      func(Analysis) bool
		reason     string
	}{
		{"the time in a computation", "late if input.time_ns - 5 > 0\n", func(a Analysis) bool { return !a.Memo }, "other than in a comparison"},
		{"the time against a computed instant", "late if input.time_ns > 5 + 1\n", func(a Analysis) bool { return !a.Memo }, "compares the time with"},
		{"the time against an unknown field", "late if input.time_ns > data.x.deadline\n", func(a Analysis) bool { return !a.Memo }, "compares the time with data.x.deadline"},
		{"the time against a literal", "late if input.time_ns > 1800000000000000000\n", func(a Analysis) bool {
			return a.Memo && len(a.Literals) == 1 && a.Literals[0] == 1800000000000000000
		}, ""},
		{"the clock", "late if time.now_ns() > 0\n", func(a Analysis) bool { return !a.Memo }, "calls time.now_ns"},
		{"the whole input", "x := input\n", func(a Analysis) bool { return !a.Memo && a.Practitioner }, "uses the whole input"},
		{"the practitioner", "x := input.requester.practitioner\n", func(a Analysis) bool { return a.Memo && a.Practitioner }, ""},
		{"a consent instant compared with another", "x if { some c in input.consents; c.valid_from_ns < c.valid_until_ns }\n", func(a Analysis) bool {
			return a.Memo && !a.ConsentTimes
		}, ""},
		{"a consent id read as text", "x if { some c in input.consents; startswith(c.id, \"legacy-\") }\n", func(a Analysis) bool {
			return a.Memo && !a.OpaqueIDs
		}, ""},
		{"a consent id against a literal", "x if { some c in input.consents; c.id == \"c-1\" }\n", func(a Analysis) bool {
			return a.Memo && !a.OpaqueIDs
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := policy.Sources{Modules: map[string]string{"sharing.rego": demo.Modules["sharing.rego"], "extra.rego": head + c.rego}}
			a := Analyze(src)
			if !c.check(a) || !strings.Contains(a.Reason, c.reason) {
				t.Fatalf("%+v", a)
			}
		})
	}
}
