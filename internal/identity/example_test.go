package identity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/registry"
)

func ExampleVerifier_Verify() {
	ctx := context.Background()
	priv, pub, err := registry.GenerateKey("la-social-care", jwa.ES256)
	if err != nil {
		fmt.Println(err)
		return
	}
	pubJSON, _ := json.Marshal(pub)
	reg, err := registry.Parse(ctx, []byte(`
id: example-trust
name: Example Children's Trust
purposes: [{id: safeguarding, description: Safeguarding}]
categories: [{id: identity, description: Basic identity}]
roles: [{id: social_worker, description: Social worker}]
partners:
  - id: la-social-care
    name: Children's Social Care
    type: local_authority
    jwks: {"keys": [`+string(pubJSON)+`]}
`), ".")
	if err != nil {
		fmt.Println(err)
		return
	}
	now := func() time.Time { return time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) }
	v := identity.NewVerifier(identity.Config{Now: now}, identity.StaticDirectory(reg),
		identity.NewMemoryReplayCache(now, 0))

	tok, err := identity.Mint(priv, identity.MintClaims{
		Issuer: "la-social-care", Subject: "sw-0042", Role: "social_worker", JTI: "req-0001", IssuedAt: now(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := v.Verify(ctx, tok)
	fmt.Println(c.Partner, c.Practitioner, c.Role, c.Expiry.Format(time.Kitchen), err)

	_, err = v.Verify(ctx, tok)
	fmt.Println(err)
	// Output:
	// la-social-care sw-0042 social_worker 10:05AM <nil>
	// unauthenticated: replayed: token "req-0001" of partner "la-social-care" has already been used
}

func ExampleExtractBearer() {
	r := httptest.NewRequest("GET", "/v1/children/9990000018", nil)
	r.Header.Set("Authorization", "bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
	tok, err := identity.ExtractBearer(r)
	fmt.Println(tok, err)

	r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	_, err = identity.ExtractBearer(r)
	fmt.Println(err)
	// Output:
	// eyJhbGciOiJFUzI1NiJ9.e30.c2ln <nil>
	// unauthenticated: malformed: Authorization scheme must be Bearer
}
