package authz_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func demoTrust(t *testing.T) (string, *registry.Registry) {
	t.Helper()
	dir := t.TempDir()
	if err := demo.Init(dir, demo.Options{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Load(context.Background(), filepath.Join(dir, "protocols", "trust.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, reg
}

func TestAuthorizeTheDemoTrust(t *testing.T) {
	dir, reg := demoTrust(t)
	sts, err := authz.LoadDir(filepath.Join(dir, "protocols", authz.Dir), reg, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if !st.InForce {
			t.Fatalf("%s not in force: %v", st.File, st.Reasons)
		}
	}
	m := authz.New(reg, sts)
	for _, c := range []struct {
		partner, sub, role string
		at                 time.Time
		code               string
		scope              authz.Scope
	}{
		{"exley-csc", "sw-0042", "social_worker", now, "", authz.ScopeAgency},
		{"exley-academy", "t-1", "teacher", now, "", authz.ScopeAgency},
		{"exley-academy", "t-1", "paediatrician", now, authz.CodeRoleNotHeld, ""},
		{"exley-academy", "t-1", "auditor", now, authz.CodeRoleNotHeld, ""},
		{"exley-jcp", "wc-1", "auditor", now, authz.CodeRoleNotHeld, ""},
		{"safe-families", "v-1", "ig_lead", now, authz.CodeNotAppointed, ""},
		{"exley-csc", "ig-0001", "ig_lead", now, "", authz.ScopeTrust},
		{"exley-csc", "ig-0001", "auditor", now, authz.CodeNotAppointed, ""},
		{"exley-csc", "ig-0002", "ig_lead", now, authz.CodeNotAppointed, ""},
		{"exley-police", "ig-0002", "ig_lead", now, "", authz.ScopeAgency},
		{"exley-police", "prac-auditor", "auditor", now, "", authz.ScopeTrust},
		{"exley-community-health", "aud-0009", "auditor", now, "", authz.ScopeAgency},
		{"exley-csc", "ig-0001", "ig_lead", time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), authz.CodeNotAppointed, ""},
		{"exley-csc", "ig-0001", "ig_lead", time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC), authz.CodeNotAppointed, ""},
		{"exley-csc", "sw-0042", "no_such_role", now, authz.CodeRoleNotHeld, ""},
	} {
		g, err := m.Authorize(c.partner, c.sub, c.role, c.at)
		var r *authz.Refusal
		switch {
		case c.code == "" && err != nil:
			t.Errorf("%s/%s as %s: %v", c.partner, c.sub, c.role, err)
		case c.code != "" && (!errors.As(err, &r) || r.Code != c.code):
			t.Errorf("%s/%s as %s: %v, want %s", c.partner, c.sub, c.role, err, c.code)
		case c.code == "" && g.Scope != c.scope:
			t.Errorf("%s/%s as %s: scope %s, want %s", c.partner, c.sub, c.role, g.Scope, c.scope)
		}
	}
}

// An appointment is valid only with every signature it needs: a Trust-wide
// one signed by the partner alone, one signed by another partner, an
// edited one, and a withdrawn one all confer nothing.
func TestAppointmentSignaturesAndWithdrawal(t *testing.T) {
	dir, reg := demoTrust(t)
	adir := filepath.Join(dir, "protocols", authz.Dir)
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	path := filepath.Join(adir, "appt-csc-ig-0001.yaml")
	doc, sigs := read(path), read(path+protocol.SignatureSuffix)
	if st := authz.Evaluate(path, doc, sigs, nil, reg, now); !st.InForce {
		t.Fatalf("demo appointment: %v", st.Reasons)
	}
	// The partner's signature only.
	cscKey, _, err := protocol.ReadPrivateKey(filepath.Join(dir, "keys", "exley-csc.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	only, err := authz.Sign(doc, nil, cscKey, "exley-csc")
	if err != nil {
		t.Fatal(err)
	}
	if st := authz.Evaluate(path, doc, only, nil, reg, now); st.Valid || len(st.Faults) != 0 {
		t.Fatalf("signed by the partner alone: valid %v faults %v", st.Valid, st.Faults)
	}
	// The school cannot sign for the council, and a school key cannot be the Trust's.
	schoolKey, _, _ := protocol.ReadPrivateKey(filepath.Join(dir, "keys", "exley-academy.jwk"))
	if _, err := authz.Sign(doc, nil, schoolKey, "exley-academy"); !errors.Is(err, protocol.ErrNotSignatory) {
		t.Fatalf("a non-signatory signed: %v", err)
	}
	forged, err := authz.Sign(doc, only, schoolKey, "exley-childrens-trust")
	if err != nil {
		t.Fatal(err)
	}
	if st := authz.Evaluate(path, doc, forged, nil, reg, now); st.Valid || len(st.Faults) == 0 {
		t.Fatalf("a school key signing as the Trust: %v", st.Reasons)
	}
	// Edited after signing.
	edited := append([]byte{}, doc...)
	edited = append(edited, []byte("# edited\n")...)
	if st := authz.Evaluate(path, edited, sigs, nil, reg, now); st.Valid {
		t.Fatal("an edited appointment is valid")
	}
	// Withdrawn by the partner from tomorrow: valid today, not after.
	w, err := authz.Withdraw(doc, nil, cscKey, "exley-csc", now.Add(24*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	st := authz.Evaluate(path, doc, sigs, w, reg, now)
	if !st.InForce || !st.Until.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("before the withdrawal: %+v", st)
	}
	m := authz.New(reg, []authz.Status{st})
	if _, err := m.Authorize("exley-csc", "ig-0001", "ig_lead", now.Add(25*time.Hour)); err == nil {
		t.Fatal("a withdrawn appointment still grants")
	}
	if st := authz.Evaluate(path, doc, sigs, w, reg, now.Add(48*time.Hour)); st.Valid {
		t.Fatal("withdrawn, still valid")
	}
}
