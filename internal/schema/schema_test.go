package schema

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoFilesMatchTheirSchemas: every demo protocol and the demo
// registry satisfy the published schemas, and name them for editors.
func TestDemoFilesMatchTheirSchemas(t *testing.T) {
	files, err := filepath.Glob("../../protocols/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("demo protocols: %v %v", files, err)
	}
	for _, f := range files {
		name := Protocol
		if filepath.Base(f) == "trust.yaml" {
			name = Registry
		}
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		probs, err := CheckYAML(name, doc)
		if err != nil || len(probs) > 0 {
			t.Errorf("%s against %s: %v %v", f, name, probs, err)
		}
		if !strings.Contains(string(doc), "# yaml-language-server: $schema=../docs/schemas/"+name) {
			t.Errorf("%s does not name its schema for editors", f)
		}
	}
}

func TestProtocolSchemaFindsProblems(t *testing.T) {
	doc, err := os.ReadFile("../../protocols/safeguarding.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(doc), "override_grounds: [risk_of_significant_harm, section_47_enquiry, emergency_medical]", "override_grounds: [risk_of_significant_harm, court_order]", 1)
	bad = strings.Replace(bad, "consent: not_required", "consent: maybe", 1)
	bad = strings.Replace(bad, "expires: 2028-01-01", "expires: 1 January 2028\nowner: nobody", 1)
	probs, err := CheckYAML(Protocol, []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range probs {
		got[p.Field] = true
	}
	for _, want := range []string{"rules[0].override_grounds[1]", "rules[1].consent", "expires", ""} {
		if !got[want] {
			t.Errorf("no problem at %q in %v", want, probs)
		}
	}
}
