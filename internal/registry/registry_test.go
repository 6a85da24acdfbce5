package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/protocols"
)

const vocab = `
id: t
name: T
purposes: [{id: safeguarding, description: s}]
categories: [{id: identity, description: i}]
roles: [{id: social_worker, description: r}]
`

func TestDemoRegistryCoversEveryStatutoryType(t *testing.T) {
	b, err := fs.ReadFile(protocols.FS, "trust.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Parse(context.Background(), b, ".")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(reg.Partners()); n < 10 {
		t.Fatalf("%d partners", n)
	}
	types := map[registry.PartnerType]bool{}
	sensitive := 0
	for _, p := range reg.Partners() {
		types[p.Type] = true
		if p.Sensitive {
			sensitive++
		}
	}
	for _, ty := range registry.PartnerTypes {
		if !types[ty] {
			t.Errorf("no demo partner of type %s", ty)
		}
	}
	if sensitive == 0 {
		t.Error("no sensitive service in the demo")
	}
}

func keyFile(t *testing.T, dir, id string) string {
	t.Helper()
	_, pub, err := registry.GenerateKey(id, jwa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	set.AddKey(pub)
	b, _ := json.Marshal(set)
	p := filepath.Join(dir, id+".jwks.json")
	os.WriteFile(p, b, 0o644)
	return p
}

func TestKeysFromFileInlineAndURI(t *testing.T) {
	dir := t.TempDir()
	keyFile(t, dir, "a-agency")
	_, pubB, _ := registry.GenerateKey("b-agency", jwa.EdDSA)
	inline, _ := json.Marshal(map[string]any{"keys": []any{pubB}})
	_, pubC, _ := registry.GenerateKey("c-agency", jwa.ES256)
	setC := jwk.NewSet()
	setC.AddKey(pubC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(setC)
	}))
	defer srv.Close()
	doc := vocab + `partners:
  - {id: a-agency, name: A, type: police, jwks_file: a-agency.jwks.json}
  - {id: b-agency, name: B, type: school, jwks: ` + string(inline) + `}
  - {id: c-agency, name: C, type: gp, jwks_uri: "` + srv.URL + `"}
`
	reg, err := registry.Parse(context.Background(), []byte(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	for id, kid := range map[string]string{"b-agency": pubB.KeyID(), "c-agency": pubC.KeyID()} {
		p, ok := reg.Partner(id)
		if !ok {
			t.Fatalf("%s missing", id)
		}
		if _, ok := p.Keys().LookupKeyID(kid); !ok {
			t.Fatalf("%s: kid %s not found", id, kid)
		}
	}
	a, _ := reg.Partner("a-agency")
	if a.Keys().Len() != 1 {
		t.Fatal("a-agency has no key")
	}
}

func TestInvalidRegistries(t *testing.T) {
	priv, _, _ := registry.GenerateKey("x-agency", jwa.ES256)
	privJSON, _ := json.Marshal(map[string]any{"keys": []any{priv}})
	cases := map[string]string{
		"unknown key":       vocab + "colour: red\npartners: []\n",
		"bad type":          vocab + "partners: [{id: x-agency, name: X, type: bank}]\n",
		"duplicate partner": vocab + "partners: [{id: x-agency, name: X, type: gp}, {id: x-agency, name: Y, type: gp}]\n",
		"private key":       vocab + "partners: [{id: x-agency, name: X, type: gp, jwks: " + string(privJSON) + "}]\n",
		"two key sources":   vocab + "partners: [{id: x-agency, name: X, type: gp, jwks_file: a, jwks_uri: 'http://127.0.0.1:1/'}]\n",
		"bad endpoint":      vocab + "partners: [{id: x-agency, name: X, type: gp, endpoint: 'ftp://x'}]\n",
		"no purposes":       "id: t\nname: T\ncategories: [{id: a}]\nroles: [{id: b}]\npartners: []\n",
		"bad id":            vocab + "partners: [{id: 'X Agency', name: X, type: gp}]\n",
		"missing jwks_file": vocab + "partners: [{id: x-agency, name: X, type: gp, jwks_file: nowhere.json}]\n",
	}
	for name, doc := range cases {
		_, err := registry.Parse(context.Background(), []byte(doc), t.TempDir())
		if !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	_, err := registry.Parse(context.Background(), []byte(vocab+"partners: [{id: x-agency, name: X, type: gp, jwks: "+string(privJSON)+"}]\n"), ".")
	if err == nil || !strings.Contains(err.Error(), "public keys only") {
		t.Fatalf("private key message: %v", err)
	}
}
