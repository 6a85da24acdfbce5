package console

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/childrens-trust/trustgate/internal/identity"
)

// LinkAudience is the audience of a development sign-in link's token:
// not the gateway's own, so that a link cannot be used as an API token
// nor an API token as a link.
func LinkAudience(gatewayID string) string { return gatewayID + "-console" }

// Link makes a one-time development sign-in link for the console at base
// (e.g. http://127.0.0.1:8080): an agency token for LinkAudience, signed
// with the agency's private key, naming the practitioner and the role.
// The gateway accepts it once (its jti), within lifetime, and only when
// console.dev_links is on.
func Link(key jwk.Key, partner, practitioner, role, gatewayID, base string, lifetime time.Duration) (string, error) {
	tok, err := identity.Mint(key, identity.MintClaims{Issuer: partner, Subject: practitioner, Role: role, Audience: LinkAudience(gatewayID), IssuedAt: time.Now(), Lifetime: lifetime})
	if err != nil {
		return "", fmt.Errorf("console link: %w", err)
	}
	return strings.TrimSuffix(base, "/") + Prefix + "link?t=" + url.QueryEscape(tok), nil
}
