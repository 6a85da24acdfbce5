package protocol

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// SignatureType is the "typ" protected header of every protocol signature.
const SignatureType = "trustgate-protocol+jws"

// SignatureSuffix is appended to a protocol file's name to name its
// signature file: safeguarding.yaml → safeguarding.yaml.jws.
const SignatureSuffix = ".jws"

// The protected header members of a protocol signature. "partner" names the
// signing partner; "protocol" and "version" repeat the signed document's id
// and version so that the .jws is self-describing and a signature file
// paired with the wrong protocol file is reported as such instead of as a
// bare bad signature. The signature covers the file's bytes in any case.
const (
	HeaderPartner  = "partner"
	HeaderProtocol = "protocol"
	HeaderVersion  = "version"
)

// allowedHeaders is every protected header member a verifier accepts. Any
// other (crit, jku, jwk, x5u, x5c, b64, ...) makes the signature not OK: a
// protocol signature names its key by kid only, and only the registry says
// which keys a partner has.
var allowedHeaders = map[string]bool{
	jws.AlgorithmKey: true, jws.KeyIDKey: true, jws.TypeKey: true,
	HeaderPartner: true, HeaderProtocol: true, HeaderVersion: true,
}

// Errors of Sign and SignFile, for errors.Is.
var (
	// ErrKey: the key cannot sign protocols (not private, no kid, not an
	// ES256 or EdDSA key).
	ErrKey = errors.New("unusable signing key")
	// ErrNotSignatory: the partner is not a signatory of the protocol.
	ErrNotSignatory = errors.New("not a signatory")
	// ErrSignatureFile: the existing signature file is malformed.
	ErrSignatureFile = errors.New("malformed signature file")
)

// signatureFile is the General JWS JSON Serialization with a detached
// payload: no "payload" member.
type signatureFile struct {
	Signatures []signatureEntry `json:"signatures"`
}

type signatureEntry struct {
	Protected string          `json:"protected"`
	Header    json.RawMessage `json:"header,omitempty"`
	Signature string          `json:"signature"`
}

// SignatureResult is the verdict on one signature of a signature file.
// Partner and KeyID are what its protected header claims (empty when it
// could not be read). Reason says why OK is false.
type SignatureResult struct {
	Partner string `json:"partner"`
	KeyID   string `json:"kid"`
	OK      bool   `json:"ok"`
	Reason  string `json:"reason,omitempty"`
}

// Sign adds partner's signature over doc (the protocol file's exact bytes)
// to existing (the current signature file, or nil) and returns the new
// signature file. A previous signature by the same partner is replaced; the
// others are kept byte for byte. The output is indented JSON with the
// signatures sorted by partner, then kid.
//
// Sign refuses a document that does not Parse (ErrInvalid), a partner who is
// not one of its signatories (ErrNotSignatory), a key that is not a private
// ES256 (P-256) or Ed25519 key with a kid (ErrKey), and an existing file it
// cannot read (ErrSignatureFile). It does not consult the registry: whether
// the kid is that partner's registered key is checked on verification.
func Sign(doc []byte, existing []byte, key jwk.Key, partner string) ([]byte, error) {
	p, err := Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return SignDocument(ProtocolKind, p, doc, existing, key, partner)
}

// Kind is a sort of Trust document that partners sign with detached
// multi-party signatures and withdraw from with signed withdrawals, in the
// formats of this package: protocols, and appointments (internal/authz).
type Kind struct {
	Name string // "protocol", "appointment": in messages
	// SignatureType and WithdrawalType are the typ protected headers.
	SignatureType  string
	WithdrawalType string
	// IDHeader is the protected header that repeats the document's id
	// (HeaderVersion repeats its version).
	IDHeader string
}

// ProtocolKind is the kind of information-sharing protocols.
var ProtocolKind = Kind{Name: "protocol", SignatureType: SignatureType, WithdrawalType: WithdrawalType, IDHeader: HeaderProtocol}

// Signed is a parsed document of some Kind.
type Signed interface {
	DocumentID() string
	DocumentVersion() string
	// IsSignatory reports whether signer must sign the document.
	IsSignatory(signer string) bool
}

// DocumentID and DocumentVersion make a *Protocol a Signed document.
func (p *Protocol) DocumentID() string      { return p.ID }
func (p *Protocol) DocumentVersion() string { return p.Version }

// SignDocument adds signer's signature over doc, the exact bytes of the
// parsed document d of kind k, to existing, as Sign does for protocols.
func SignDocument(k Kind, d Signed, doc []byte, existing []byte, key jwk.Key, partner string) ([]byte, error) {
	if !d.IsSignatory(partner) {
		return nil, fmt.Errorf("sign: %w: %q is not a signatory of %s", ErrNotSignatory, partner, d.DocumentID())
	}
	alg, err := signingAlgorithm(key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	var file signatureFile
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := decodeSignatureFile(existing, &file); err != nil {
			return nil, fmt.Errorf("sign: %w: %v", ErrSignatureFile, err)
		}
	}
	hdr := jws.NewHeaders()
	for k, v := range map[string]any{
		jws.KeyIDKey:  key.KeyID(),
		jws.TypeKey:   k.SignatureType,
		HeaderPartner: partner,
		k.IDHeader:    d.DocumentID(),
		HeaderVersion: d.DocumentVersion(),
	} {
		if err := hdr.Set(k, v); err != nil {
			return nil, fmt.Errorf("sign: header %s: %w", k, err)
		}
	}
	compact, err := jws.Sign(nil, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)), jws.WithDetachedPayload(doc))
	if err != nil {
		return nil, fmt.Errorf("sign: %w: %v", ErrKey, err)
	}
	protected, _, signature, err := jws.SplitCompact(compact)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	type keyed struct {
		partner, kid string
		e            signatureEntry
	}
	entries := []keyed{{partner, key.KeyID(), signatureEntry{Protected: string(protected), Signature: string(signature)}}}
	for i, e := range file.Signatures {
		h, err := decodeProtected(e.Protected)
		if err != nil {
			return nil, fmt.Errorf("sign: %w: signatures[%d]: %v", ErrSignatureFile, i, err)
		}
		who, _ := h[HeaderPartner].(string)
		if who == partner {
			continue // one signature per signatory: this one is replaced
		}
		kid, _ := h[jws.KeyIDKey].(string)
		entries = append(entries, keyed{who, kid, e})
	}
	slices.SortStableFunc(entries, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.partner, b.partner), cmp.Compare(a.kid, b.kid))
	})
	out := signatureFile{Signatures: make([]signatureEntry, len(entries))}
	for i, e := range entries {
		out.Signatures[i] = e.e
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return append(b, '\n'), nil
}

// signingAlgorithm picks ES256 for a P-256 key and EdDSA for an Ed25519 key,
// and checks the key is private, has a kid, and agrees with its own "alg".
func signingAlgorithm(key jwk.Key) (jwa.SignatureAlgorithm, error) {
	if key == nil {
		return "", fmt.Errorf("%w: no key", ErrKey)
	}
	var alg jwa.SignatureAlgorithm
	switch k := key.(type) {
	case jwk.ECDSAPrivateKey:
		if k.Crv() != jwa.P256 {
			return "", fmt.Errorf("%w: EC curve %s is not P-256 (ES256)", ErrKey, k.Crv())
		}
		alg = jwa.ES256
	case jwk.OKPPrivateKey:
		if k.Crv() != jwa.Ed25519 {
			return "", fmt.Errorf("%w: OKP curve %s is not Ed25519 (EdDSA)", ErrKey, k.Crv())
		}
		alg = jwa.EdDSA
	case jwk.ECDSAPublicKey, jwk.OKPPublicKey, jwk.RSAPublicKey:
		return "", fmt.Errorf("%w: a public key cannot sign; use the agency's private JWK", ErrKey)
	default:
		return "", fmt.Errorf("%w: key type %s is not allowed (ES256 P-256 or EdDSA Ed25519)", ErrKey, key.KeyType())
	}
	if key.KeyID() == "" {
		return "", fmt.Errorf("%w: the key has no kid", ErrKey)
	}
	if a := key.Algorithm(); a != nil && a.String() != "" && a.String() != alg.String() {
		return "", fmt.Errorf("%w: the key says alg %s but is a %s key", ErrKey, a, alg)
	}
	return alg, nil
}

func decodeSignatureFile(b []byte, into *signatureFile) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	if into.Signatures == nil {
		return errors.New(`no "signatures" member (General JWS JSON Serialization expected)`)
	}
	return nil
}

// decodeProtected decodes a protected header: base64url without padding,
// then one JSON object whose members each appear once (a repeated member
// could be read differently by different JOSE libraries).
func decodeProtected(s string) (map[string]any, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("protected header is not base64url")
	}
	notObject := errors.New("protected header is not a JSON object")
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, notObject
	}
	h := map[string]any{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, notObject
		}
		name, _ := t.(string)
		if _, dup := h[name]; dup {
			return nil, fmt.Errorf("protected header member %q appears twice", name)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, notObject
		}
		h[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, notObject
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, notObject
	}
	return h, nil
}

// VerifySignatures checks every signature of a signature file over doc, one
// at a time, each against the registered key of the partner its protected
// header names, found by kid. p is the parsed document (nil if it did not
// parse); when given, a signature's protocol and version headers must match
// it. Results are in file order. A malformed file yields one result with an
// empty Partner; an empty sigs yields no results.
//
// A signature is not OK when: its header is unreadable; it lacks partner or
// kid; it has an unprotected header; it has any protected header other than
// alg, kid, typ, partner, protocol, version (so crit, jku, jwk, x5u, x5c and
// b64 are refused); alg is not ES256 or EdDSA; typ is not
// trustgate-protocol+jws; the partner is not registered; the kid is not one
// of that partner's keys (another partner's key included); the key's own
// alg or use disagree; or the signature does not verify over doc.
// Signatory membership is not judged here (see Evaluate).
func VerifySignatures(doc, sigs []byte, p *Protocol, reg *registry.Registry) []SignatureResult {
	var d Signed
	if p != nil {
		d = p
	}
	return VerifyDocument(ProtocolKind, doc, sigs, d, reg)
}

// VerifyDocument checks every signature of a signature file over doc, a
// document of kind k (d parsed from it, or nil), as VerifySignatures does
// for protocols: the typ must be k's, the id header k's IDHeader, and a
// signer is a partner or the Trust itself (registry.SignerKeys).
func VerifyDocument(k Kind, doc, sigs []byte, d Signed, reg *registry.Registry) []SignatureResult {
	results := []SignatureResult{}
	if len(bytes.TrimSpace(sigs)) == 0 {
		return results
	}
	var file signatureFile
	if err := decodeSignatureFile(sigs, &file); err != nil {
		return append(results, SignatureResult{Reason: "malformed signature file: " + err.Error()})
	}
	for _, e := range file.Signatures {
		results = append(results, verifyOne(k, doc, e, d, reg))
	}
	return results
}

func verifyOne(k Kind, doc []byte, e signatureEntry, d Signed, reg *registry.Registry) SignatureResult {
	h, err := decodeProtected(e.Protected)
	if err != nil {
		return SignatureResult{Reason: err.Error()}
	}
	allowed := allowedHeaders
	if k.IDHeader != HeaderProtocol {
		allowed = map[string]bool{jws.AlgorithmKey: true, jws.KeyIDKey: true, jws.TypeKey: true, HeaderPartner: true, k.IDHeader: true, HeaderVersion: true}
	}
	partner, kid, alg, problem := signerHeader(h, allowed, k.SignatureType, func() string {
		if len(e.Header) > 0 && !bytes.Equal(bytes.TrimSpace(e.Header), []byte("null")) {
			return "unprotected header is not allowed"
		}
		return ""
	})
	res := SignatureResult{Partner: partner, KeyID: kid}
	bad := func(format string, args ...any) SignatureResult {
		res.Reason = fmt.Sprintf(format, args...)
		return res
	}
	if problem != "" {
		return bad("%s", problem)
	}
	if d != nil {
		if v, ok := h[k.IDHeader]; ok && v != d.DocumentID() {
			return bad("signed for %s %v, this file is %s", k.Name, v, d.DocumentID())
		}
		if v, ok := h[HeaderVersion]; ok && v != d.DocumentVersion() {
			return bad("signed for version %v, this file is version %s", v, d.DocumentVersion())
		}
	}
	if _, err := base64.RawURLEncoding.DecodeString(e.Signature); err != nil || e.Signature == "" {
		return bad("signature is not base64url")
	}
	key, problem := signingKey(reg, partner, kid, alg, "signature")
	if problem != "" {
		return bad("%s", problem)
	}
	compact := []byte(e.Protected + ".." + e.Signature)
	if _, err := jws.Verify(compact, jws.WithKey(jwa.SignatureAlgorithm(alg), key), jws.WithDetachedPayload(doc)); err != nil {
		return bad("signature does not verify over this file with key %q", kid)
	}
	res.OK = true
	return res
}

// signingKey finds the registered key that must have made a signature (or
// a withdrawal: what names the document) of partner's with kid and alg, or
// says exactly why there is none: an unknown partner, a kid that is
// another partner's or nobody's, a key registered for another algorithm or
// not for signing.
func signingKey(reg *registry.Registry, partner, kid, alg, what string) (jwk.Key, string) {
	set, ok := reg.SignerKeys(partner)
	if !ok {
		return nil, fmt.Sprintf("unknown partner %q", partner)
	}
	key, ok := lookupKey(set, kid)
	if !ok {
		for _, other := range reg.Partners() {
			if _, theirs := lookupKey(other.Keys(), kid); theirs {
				return nil, fmt.Sprintf("key %q belongs to %s, not %s", kid, other.ID, partner)
			}
		}
		if trust, _ := reg.SignerKeys(reg.ID()); partner != reg.ID() {
			if _, theirs := lookupKey(trust, kid); theirs {
				return nil, fmt.Sprintf("key %q belongs to %s, not %s", kid, reg.ID(), partner)
			}
		}
		return nil, fmt.Sprintf("unknown key %q for %s", kid, partner)
	}
	if a := key.Algorithm(); a != nil && a.String() != "" && a.String() != alg {
		return nil, fmt.Sprintf("key %q is registered for %s, the %s says %s", kid, a, what, alg)
	}
	if u := key.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
		return nil, fmt.Sprintf("key %q is not registered for signing (use %q)", kid, u)
	}
	return key, ""
}

func lookupKey(set jwk.Set, kid string) (jwk.Key, bool) {
	if set == nil {
		return nil, false
	}
	return set.LookupKeyID(kid)
}

// PartnerFromKeyID returns the partner id encoded in a kid made by
// registry.GenerateKey ("<partner>-<12 characters of thumbprint>").
func PartnerFromKeyID(kid string) (string, bool) {
	const suffix = 13 // "-" + 12 characters
	if len(kid) <= suffix || kid[len(kid)-suffix] != '-' {
		return "", false
	}
	id := kid[:len(kid)-suffix]
	if !idPattern.MatchString(id) {
		return "", false
	}
	return id, true
}

// signerHeader checks the protected header of a partner's signature over
// a Trust document (a protocol signature or a withdrawal), in this order:
// it names the partner and the kid; extra (when not nil) does not refuse
// it; it holds only the allowed parameters; its alg is ES256 or EdDSA; its
// typ is typ. It returns the partner and kid it names (also when it
// refuses the header), the alg, and the first problem ("" when none).
func signerHeader(h map[string]any, allowed map[string]bool, typ string, extra func() string) (partner, kid, alg, problem string) {
	partner, _ = h[HeaderPartner].(string)
	kid, _ = h[jws.KeyIDKey].(string)
	if partner == "" {
		return partner, kid, "", "protected header has no partner"
	}
	if kid == "" {
		return partner, kid, "", "protected header has no kid"
	}
	if extra != nil {
		if p := extra(); p != "" {
			return partner, kid, "", p
		}
	}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if !allowed[k] {
			return partner, kid, "", fmt.Sprintf("header %q is not allowed", k)
		}
	}
	alg, _ = h[jws.AlgorithmKey].(string)
	if alg != jwa.ES256.String() && alg != jwa.EdDSA.String() {
		return partner, kid, "", fmt.Sprintf("algorithm %q is not allowed (ES256, EdDSA)", alg)
	}
	if got, _ := h[jws.TypeKey].(string); got != typ {
		return partner, kid, "", fmt.Sprintf("typ %q is not %s", got, typ)
	}
	return partner, kid, alg, ""
}
