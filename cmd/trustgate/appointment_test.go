package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/childrens-trust/trustgate/internal/demo"
)

// An appointment with a Trust-wide scope is in force only once both the
// partner and the Trust have signed it, and a withdrawal ends it.
func TestAppointmentCommands(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Init(dir, demo.Options{Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	protos := filepath.Join(dir, "protocols")
	file := filepath.Join(protos, "appointments", "appt-yos-aud-1.yaml")
	doc := "id: appt-yos-aud-1\nversion: \"1\"\ntrust: exley-childrens-trust\npartner: exley-csc\npractitioner: aud-1\nrole: auditor\nscope: trust\nfrom: 2026-01-01\nuntil: 2099-01-01\n"
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	row := func() string {
		code, out := runCLI(t, "appointment", "list", "--dir", protos)
		if code != 0 {
			t.Fatalf("list: %d %s", code, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "appt-yos-aud-1 ") {
				return l
			}
		}
		t.Fatalf("not listed: %s", out)
		return ""
	}
	if r := row(); !strings.Contains(r, "false") || !strings.Contains(r, "not signed by exley-csc") {
		t.Fatalf("unsigned: %s", r)
	}
	if code, out := runCLI(t, "appointment", "sign", "--key", filepath.Join(dir, "keys", "exley-academy.jwk"), file); code != 1 {
		t.Fatalf("a non-signatory signed: %d %s", code, out)
	}
	if code, out := runCLI(t, "appointment", "sign", "--key", filepath.Join(dir, "keys", "exley-csc.jwk"), file); code != 0 {
		t.Fatalf("sign: %d %s", code, out)
	}
	if r := row(); !strings.Contains(r, "not signed by exley-childrens-trust") {
		t.Fatalf("partner only: %s", r)
	}
	if code, out := runCLI(t, "appointment", "sign", "--key", filepath.Join(dir, "keys", "exley-childrens-trust.jwk"), file); code != 0 {
		t.Fatalf("sign as the Trust: %d %s", code, out)
	}
	if r := row(); !strings.Contains(r, " true ") {
		t.Fatalf("signed by both: %s", r)
	}
	if code, out := runCLI(t, "appointment", "withdraw", "--key", filepath.Join(dir, "keys", "exley-csc.jwk"), "--effective", "now", file); code != 0 {
		t.Fatalf("withdraw: %d %s", code, out)
	}
	if r := row(); !strings.Contains(r, "withdrawn by exley-csc") {
		t.Fatalf("withdrawn: %s", r)
	}
}
