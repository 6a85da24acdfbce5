package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/keys"
)

type cliDirectory struct{}

func (cliDirectory) PartnerName(id string) string        { return "Partner " + id }
func (cliDirectory) PurposeDescription(id string) string { return "Purpose " + id }
func (cliDirectory) SpecialCategory(id string) bool      { return id == "immunisations" }

func TestConsentReceiptVerify(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ks, err := keys.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	rec := &consent.Record{
		ID: consent.NewID(), Subject: strings.Repeat("ab", 32), Outcome: consent.Given, GivenBy: "parent",
		Purposes: []string{"early_help"}, Categories: []string{"identity", "immunisations"},
		Recipients: consent.Recipients{Partners: []string{"exley-csc"}}, ValidFrom: at, Obtained: "written", EvidenceRef: "EH-1",
		RecordedBy: consent.Actor{Partner: "exley-csc", Practitioner: "ew-1"}, RecordedAt: at, ReceiptID: consent.NewReceiptID(),
	}
	compact, err := consent.NewReceipt(rec, consent.ReceiptContext{Issuer: "trustgate", TrustID: "demo", TrustName: "Demo", Directory: cliDirectory{}, Recipients: []string{"exley-csc"}}).Sign(ctx, ks)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := ks.PublicKeys(ctx)
	jwks, _ := json.Marshal(set)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jwksFile := write("jwks.json", string(jwks))
	receiptFile := write("receipt.jws", compact+"\n")
	answerFile := write("answer.json", `{"consent_id":"`+rec.ID+`","receipt":"`+compact+`"}`)
	parts := strings.Split(compact, ".")
	tampered := write("tampered.jws", parts[0]+"."+parts[1]+"A."+parts[2])
	other, _ := keys.OpenLocal(filepath.Join(dir, "other"))
	otherSet, _ := other.PublicKeys(ctx)
	otherJWKS, _ := json.Marshal(otherSet)
	otherFile := write("other.json", string(otherJWKS))

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	}))
	defer srv.Close()

	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"compact JWS against a key set file", []string{receiptFile, "--jwks", jwksFile}, exitOK, "receipt " + rec.ReceiptID + " verifies"},
		{"the gateway's JSON answer", []string{answerFile, "--jwks", jwksFile}, exitOK, "consent:        " + rec.ID + ": given by parent"},
		{"key set fetched over HTTP", []string{receiptFile, "--jwks", srv.URL + "/.well-known/jwks.json"}, exitOK, "disclosed to: Partner exley-csc"},
		{"as JSON", []string{receiptFile, "--jwks", jwksFile, "--json"}, exitOK, `"consentReceiptID": "` + rec.ReceiptID + `"`},
		{"tampered", []string{tampered, "--jwks", jwksFile}, exitFailure, "does not verify"},
		{"another gateway's keys", []string{receiptFile, "--jwks", otherFile}, exitFailure, "not in the key set"},
		{"no key set", []string{receiptFile}, exitUsage, "--jwks is required"},
		{"no file", []string{filepath.Join(dir, "nosuch"), "--jwks", jwksFile}, exitFailure, "no such file"},
		{"as JSON with --format", []string{receiptFile, "--jwks", jwksFile, "--format", "json"}, exitOK, `"consentReceiptID": "` + rec.ReceiptID + `"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := runCLI(t, append([]string{"consent", "receipt", "verify"}, c.args...)...)
			if code != c.code || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d, want %d; output:\n%s", code, c.code, out)
			}
		})
	}
}
