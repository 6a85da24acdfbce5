package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// verifiers are jwx's signature verifiers for the two accepted algorithms,
// made once: Verify hands them the signing input and the signature it has
// already split and decoded, instead of having jws.Verify parse the whole
// token a second time (that parse was a fifth of the verification's cost
// and most of its allocations; docs/performance.md).
var verifiers = func() map[jwa.SignatureAlgorithm]jws.Verifier {
	m := make(map[jwa.SignatureAlgorithm]jws.Verifier, 2)
	for _, alg := range []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA} {
		v, err := jws.NewVerifier(alg)
		if err != nil {
			panic(fmt.Sprintf("identity: jwx has no verifier for %s: %v", alg, err))
		}
		m[alg] = v
	}
	return m
}()

// rawKeyCache holds the raw public key (*ecdsa.PublicKey,
// ed25519.PublicKey) of each registry key a token named: jwx converts a
// jwk.Key on every verification (a clone of the key and its big integers),
// and registry keys never change — a reload brings new jwk.Key values. It
// is emptied when it reaches maxRawKeys, so reloads cannot grow it.
type rawKeyCache struct {
	m sync.Map // jwk.Key → raw public key
	n atomic.Int64
}

const maxRawKeys = 4096

func (c *rawKeyCache) get(k jwk.Key) (any, error) {
	if raw, ok := c.m.Load(k); ok {
		return raw, nil
	}
	var raw any
	if err := k.Raw(&raw); err != nil {
		return nil, err
	}
	if c.n.Add(1) > maxRawKeys {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(k, raw)
	return raw, nil
}

// claimSet is the part of a token's claims set the verifier reads. Names
// are matched exactly, as RFC 7519 requires (encoding/json's struct
// decoding would also match "ISS" or "Exp"); when a name repeats, the last
// value counts, as in every common JOSE library.
type claimSet struct {
	iss, sub, jti, role string
	aud                 []string
	exp, iat, nbf       numericDate
}

// numericDate is an RFC 7519 NumericDate claim: a JSON number of seconds
// since the epoch, possibly fractional.
type numericDate struct {
	t   time.Time
	set bool
}

func (d numericDate) get() (time.Time, bool) { return d.t, d.set }

// maxNumericDate is 9999-12-31T23:59:59Z: a later date is not a date a
// token can mean, and refusing it keeps the arithmetic in range.
const maxNumericDate = 253402300799

var errNotString = errors.New("is not a string")

// parseClaims reads a claims set. A registered claim of the wrong JSON
// type (an iss that is a number, an exp that is a string) makes the whole
// claims set malformed; a role that is not a string reads as no role, so
// that the caller is told the role claim is required.
func parseClaims(payload []byte) (claimSet, error) {
	var c claimSet
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil || m == nil {
		return c, errors.New("not a JSON object")
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"iss", &c.iss}, {"sub", &c.sub}, {"jti", &c.jti}} {
		if raw, ok := m[f.name]; ok {
			if json.Unmarshal(raw, f.dst) != nil || raw[0] != '"' {
				return c, fmt.Errorf("claim %s %w", f.name, errNotString)
			}
		}
	}
	if raw, ok := m["role"]; ok && len(raw) > 0 && raw[0] == '"' {
		_ = json.Unmarshal(raw, &c.role)
	}
	if raw, ok := m["aud"]; ok {
		aud, err := parseAudience(raw)
		if err != nil {
			return c, err
		}
		c.aud = aud
	}
	for _, f := range []struct {
		name string
		dst  *numericDate
	}{{"exp", &c.exp}, {"iat", &c.iat}, {"nbf", &c.nbf}} {
		if raw, ok := m[f.name]; ok {
			t, err := parseNumericDate(raw)
			if err != nil {
				return c, fmt.Errorf("claim %s %w", f.name, err)
			}
			*f.dst = numericDate{t: t, set: true}
		}
	}
	return c, nil
}

// parseAudience reads aud: one string, or an array of strings.
func parseAudience(raw json.RawMessage) ([]string, error) {
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("claim aud is not a string")
		}
		return []string{s}, nil
	case len(raw) > 0 && raw[0] == '[':
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errors.New("claim aud is not a string or an array of strings")
		}
		return list, nil
	default:
		return nil, errors.New("claim aud is not a string or an array of strings")
	}
}

// parseNumericDate reads a JSON number of seconds since the epoch.
func parseNumericDate(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return time.Time{}, errors.New("is not a NumericDate (a JSON number of seconds)")
	}
	if !bytes.ContainsAny(raw, ".eE") {
		sec, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || sec < 0 || sec > maxNumericDate {
			return time.Time{}, errors.New("is out of range")
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, errors.New("is out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}
