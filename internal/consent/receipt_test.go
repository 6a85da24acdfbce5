package consent_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/consent"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/registry"
)

func receiptContext() consent.ReceiptContext {
	return consent.ReceiptContext{Issuer: "trustgate", TrustID: "demo-trust", TrustName: "Demo Trust",
		Directory: vocab{}, Recipients: []string{"csc"}}
}

func TestReceiptSignsAndVerifies(t *testing.T) {
	ctx := context.Background()
	ks, err := keys.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set, _ := ks.PublicKeys(ctx)
	r := complete(t, parentConsent())
	r.ValidUntil = now.AddDate(1, 0, 0)
	compact, err := consent.NewReceipt(r, receiptContext()).Sign(ctx, ks)
	if err != nil {
		t.Fatal(err)
	}
	got, err := consent.VerifyReceipt([]byte(compact), set)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != consent.ReceiptVersion || got.ConsentReceiptID != r.ReceiptID || got.Jurisdiction != "GB-ENG" ||
		got.PIIPrincipalID != subject || got.ConsentTimestamp != now.Unix() || got.Trustgate.ConsentID != r.ID ||
		got.Trustgate.ReceiptType != consent.ReceiptConsent || !got.Sensitive || strings.Join(got.SPICat, ",") != "immunisations" {
		t.Fatalf("receipt %+v", got)
	}
	if len(got.PIIControllers) != 1 || got.PIIControllers[0].PartnerID != "csc" || got.PIIControllers[0].PIIController != "Partner csc" {
		t.Fatalf("controllers %+v", got.PIIControllers)
	}
	p := got.Services[0].Purposes[0]
	if !p.ThirdPartyDisclosure || p.ThirdPartyName != "Partner csc" || !strings.Contains(p.Termination, "until "+r.ValidUntil.Format(time.RFC3339)) ||
		strings.Join(p.PIICategory, ",") != "identity,immunisations" || p.PurposeCategory[0] != "early_help" {
		t.Fatalf("purpose %+v", p)
	}

	r.Withdrawal = &consent.Withdrawal{By: "parent", At: now, Obtained: "verbal", RecordedAt: now.Add(time.Minute), ReceiptID: consent.NewReceiptID(),
		RecordedBy: consent.Actor{Partner: "gp1", Practitioner: "gp-7"}}
	wc, err := consent.NewWithdrawalReceipt(r, receiptContext()).Sign(ctx, ks)
	if err != nil {
		t.Fatal(err)
	}
	wr, err := consent.VerifyReceipt([]byte(wc), set)
	if err != nil {
		t.Fatal(err)
	}
	if wr.Trustgate.ReceiptType != consent.ReceiptWithdrawal || wr.Trustgate.Withdraws != r.ID || wr.ConsentReceiptID != r.Withdrawal.ReceiptID ||
		!strings.Contains(wr.Services[0].Purposes[0].Termination, "was withdrawn") || wr.Trustgate.WithdrawnBy != "parent" {
		t.Fatalf("withdrawal receipt %+v", wr.Trustgate)
	}
	if wr.Trustgate.RecordedBy.Partner != "gp1" || wr.Trustgate.ConsentRecordedBy == nil || wr.Trustgate.ConsentRecordedBy.Partner != "csc" ||
		wr.Trustgate.Obtained != "verbal" || len(wr.PIIControllers) != 2 || wr.PIIControllers[0].PartnerID != "gp1" || wr.PIIControllers[1].PartnerID != "csc" {
		t.Fatalf("withdrawal receipt recorder %+v controllers %+v", wr.Trustgate, wr.PIIControllers)
	}

	t.Run("tampering and wrong keys are refused", func(t *testing.T) {
		parts := strings.Split(compact, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var m map[string]any
		_ = json.Unmarshal(payload, &m)
		m["piiPrincipalId"] = strings.Repeat("0", 64)
		forged, _ := json.Marshal(m)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]

		other, _ := keys.OpenLocal(t.TempDir())
		otherSet, _ := other.PublicKeys(ctx)
		foreign, _ := consent.NewReceipt(r, receiptContext()).Sign(ctx, other)

		hsKey, _ := jwk.FromRaw([]byte("a shared secret of thirty-two bytes!"))
		hdr := jws.NewHeaders()
		_ = hdr.Set(jws.TypeKey, consent.ReceiptTyp)
		_ = hdr.Set(jws.KeyIDKey, firstKID(t, set))
		hs, _ := jws.Sign(payload, jws.WithKey(jwa.HS256, hsKey, jws.WithProtectedHeaders(hdr)))

		priv, _, _ := registry.GenerateKey("trustgate", jwa.ES256)
		hdr2 := jws.NewHeaders()
		_ = hdr2.Set(jws.TypeKey, "JWT")
		wrongTyp, _ := jws.Sign(payload, jws.WithKey(jwa.ES256, priv, jws.WithProtectedHeaders(hdr2)))

		for name, c := range map[string]struct {
			token string
			set   jwk.Set
		}{
			"payload changed":               {tampered, set},
			"signed by another key":         {foreign, set},
			"verified against another":      {compact, otherSet},
			"HS256 under the gateway's kid": {string(hs), set},
			"typ is not a receipt":          {string(wrongTyp), set},
			"JSON serialisation":            {`{"payload":"e30","signatures":[]}`, set},
			"empty":                         {"", set},
		} {
			if _, err := consent.VerifyReceipt([]byte(c.token), c.set); !errors.Is(err, consent.ErrReceipt) {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

func firstKID(t *testing.T, set jwk.Set) string {
	t.Helper()
	k, ok := set.Key(0)
	if !ok {
		t.Fatal("empty key set")
	}
	return k.KeyID()
}
