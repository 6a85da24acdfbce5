package protocol

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/childrens-trust/trustgate/internal/registry"
)

// WithdrawalType is the "typ" protected header of every withdrawal.
const WithdrawalType = "trustgate-withdrawal+jws"

// WithdrawalSuffix is appended to a protocol file's name to name its
// withdrawals file: safeguarding.yaml → safeguarding.yaml.withdrawals.json.
const WithdrawalSuffix = ".withdrawals.json"

// withdrawalHeaders is every protected header member a withdrawal may carry.
var withdrawalHeaders = map[string]bool{
	jws.AlgorithmKey: true, jws.KeyIDKey: true, jws.TypeKey: true, HeaderPartner: true,
}

// ErrWithdrawalFile classifies a withdrawals file that cannot be read.
var ErrWithdrawalFile = errors.New("malformed withdrawals file")

// WithdrawalClaims is the signed payload of a withdrawal: partner withdraws
// from version Version of protocol Protocol from the instant Effective.
type WithdrawalClaims struct {
	Protocol  string    `json:"protocol"`
	Version   string    `json:"version"`
	Partner   string    `json:"partner"`
	Effective time.Time `json:"effective"`
	SignedAt  time.Time `json:"signed_at"`
}

// withdrawalFile is the JSON form of FILE.withdrawals.json: one compact
// JWS (attached payload) per withdrawal, sorted by partner.
type withdrawalFile struct {
	Withdrawals []string `json:"withdrawals"`
}

// WithdrawalResult is the verdict on one withdrawal of a withdrawals file.
// Partner and KeyID are what its protected header claims; Claims is the
// payload when the signature verified. Reason says why OK is false.
type WithdrawalResult struct {
	Partner string            `json:"partner"`
	KeyID   string            `json:"kid"`
	OK      bool              `json:"ok"`
	Reason  string            `json:"reason,omitempty"`
	Claims  *WithdrawalClaims `json:"claims,omitempty"`
}

// Withdraw adds partner's signed withdrawal from the protocol doc, from
// effective, to existing (the current withdrawals file, or nil) and returns
// the new withdrawals file. A previous withdrawal by the same partner from
// the same version is replaced. It refuses a document that does not Parse,
// a partner who is not a signatory, a key that cannot sign (see Sign) and
// a zero effective time.
func Withdraw(doc, existing []byte, key jwk.Key, partner string, effective, signedAt time.Time) ([]byte, error) {
	p, err := Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("withdraw: %w", err)
	}
	return WithdrawDocument(ProtocolKind, p, existing, key, partner, effective, signedAt)
}

// WithdrawDocument adds signer's signed withdrawal from d, a document of
// kind k, as Withdraw does for protocols. The payload's "protocol" member
// names the document, whatever its kind; the typ says which kind.
func WithdrawDocument(k Kind, d Signed, existing []byte, key jwk.Key, partner string, effective, signedAt time.Time) ([]byte, error) {
	if !d.IsSignatory(partner) {
		return nil, fmt.Errorf("withdraw: %w: %q is not a signatory of %s", ErrNotSignatory, partner, d.DocumentID())
	}
	if effective.IsZero() {
		return nil, errors.New("withdraw: the effective time is required")
	}
	alg, err := signingAlgorithm(key)
	if err != nil {
		return nil, fmt.Errorf("withdraw: %w", err)
	}
	var file withdrawalFile
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := decodeWithdrawalFile(existing, &file); err != nil {
			return nil, fmt.Errorf("withdraw: %w: %v", ErrWithdrawalFile, err)
		}
	}
	payload, err := json.Marshal(WithdrawalClaims{
		Protocol: d.DocumentID(), Version: d.DocumentVersion(), Partner: partner,
		Effective: effective.UTC(), SignedAt: signedAt.UTC().Truncate(time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("withdraw: %w", err)
	}
	hdr := jws.NewHeaders()
	for name, v := range map[string]any{jws.KeyIDKey: key.KeyID(), jws.TypeKey: k.WithdrawalType, HeaderPartner: partner} {
		if err := hdr.Set(name, v); err != nil {
			return nil, fmt.Errorf("withdraw: header %s: %w", name, err)
		}
	}
	compact, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return nil, fmt.Errorf("withdraw: %w: %v", ErrKey, err)
	}
	type keyed struct{ partner, version, jws string }
	entries := []keyed{{partner, d.DocumentVersion(), string(compact)}}
	for i, c := range file.Withdrawals {
		h, claims, err := peekWithdrawal(c)
		if err != nil {
			return nil, fmt.Errorf("withdraw: %w: withdrawals[%d]: %v", ErrWithdrawalFile, i, err)
		}
		who, _ := h[HeaderPartner].(string)
		if who == partner && claims.Version == d.DocumentVersion() && claims.Protocol == d.DocumentID() {
			continue // one withdrawal per partner and version: this one is replaced
		}
		entries = append(entries, keyed{who, claims.Version, c})
	}
	slices.SortStableFunc(entries, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.partner, b.partner), cmp.Compare(a.version, b.version))
	})
	out := withdrawalFile{Withdrawals: make([]string, len(entries))}
	for i, e := range entries {
		out.Withdrawals[i] = e.jws
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("withdraw: %w", err)
	}
	return append(b, '\n'), nil
}

// WithdrawFile signs partner's withdrawal from the protocol file at path
// and writes path+".withdrawals.json" atomically, keeping the other
// withdrawals. When partner is empty it is taken from the key's kid.
func WithdrawFile(path string, key jwk.Key, partner string, effective, signedAt time.Time) error {
	if partner == "" && key != nil {
		var ok bool
		if partner, ok = PartnerFromKeyID(key.KeyID()); !ok {
			return fmt.Errorf("withdraw %s: %w: kid %q does not name a partner; give the partner explicitly", path, ErrKey, key.KeyID())
		}
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("withdraw: %w", err)
	}
	wPath := path + WithdrawalSuffix
	existing, err := os.ReadFile(wPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("withdraw: %w", err)
	}
	out, err := Withdraw(doc, existing, key, partner, effective, signedAt)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteAtomic(wPath, out, 0o644)
}

func decodeWithdrawalFile(b []byte, into *withdrawalFile) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	if into.Withdrawals == nil {
		return errors.New(`no "withdrawals" member`)
	}
	return nil
}

// peekWithdrawal reads a compact withdrawal's header and payload without
// verifying it (for Withdraw, which keeps the others' entries as they are).
func peekWithdrawal(compact string) (map[string]any, *WithdrawalClaims, error) {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return nil, nil, errors.New("not a compact JWS")
	}
	h, err := decodeProtected(parts[0])
	if err != nil {
		return nil, nil, err
	}
	claims, err := decodeClaims(parts[1])
	if err != nil {
		return nil, nil, err
	}
	return h, claims, nil
}

func decodeClaims(b64 string) (*WithdrawalClaims, error) {
	raw, err := base64URL(b64)
	if err != nil {
		return nil, errors.New("payload is not base64url")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c WithdrawalClaims
	if err := dec.Decode(&c); err != nil {
		return nil, errors.New("payload is not a withdrawal (protocol, version, partner, effective, signed_at)")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the payload")
	}
	if c.Protocol == "" || c.Version == "" || c.Partner == "" || c.Effective.IsZero() || c.SignedAt.IsZero() {
		return nil, errors.New("payload lacks protocol, version, partner, effective or signed_at")
	}
	return &c, nil
}

// VerifyWithdrawals checks every withdrawal of a withdrawals file, one at a
// time, each against the registered key of the partner its protected
// header names, found by kid (the same key rules as VerifySignatures).
// Results are in file order. A malformed file yields one result with an
// empty Partner; an empty file yields no results. Whether a verified
// withdrawal applies (same protocol and version, by a signatory) is judged
// by Evaluate.
func VerifyWithdrawals(raw []byte, reg *registry.Registry) []WithdrawalResult {
	return VerifyDocumentWithdrawals(ProtocolKind, raw, reg)
}

// VerifyDocumentWithdrawals checks every withdrawal of a withdrawals file
// of a document of kind k, as VerifyWithdrawals does for protocols.
func VerifyDocumentWithdrawals(k Kind, raw []byte, reg *registry.Registry) []WithdrawalResult {
	results := []WithdrawalResult{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return results
	}
	var file withdrawalFile
	if err := decodeWithdrawalFile(raw, &file); err != nil {
		return append(results, WithdrawalResult{Reason: "malformed withdrawals file: " + err.Error()})
	}
	for _, c := range file.Withdrawals {
		results = append(results, verifyWithdrawal(k, c, reg))
	}
	return results
}

func verifyWithdrawal(k Kind, compact string, reg *registry.Registry) WithdrawalResult {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return WithdrawalResult{Reason: "not a compact JWS"}
	}
	h, err := decodeProtected(parts[0])
	if err != nil {
		return WithdrawalResult{Reason: err.Error()}
	}
	partner, kid, alg, problem := signerHeader(h, withdrawalHeaders, k.WithdrawalType, nil)
	res := WithdrawalResult{Partner: partner, KeyID: kid}
	bad := func(format string, args ...any) WithdrawalResult {
		res.Reason = fmt.Sprintf(format, args...)
		return res
	}
	if problem != "" {
		return bad("%s", problem)
	}
	key, problem := signingKey(reg, partner, kid, alg, "withdrawal")
	if problem != "" {
		return bad("%s", problem)
	}
	if _, err := jws.Verify([]byte(compact), jws.WithKey(jwa.SignatureAlgorithm(alg), key)); err != nil {
		return bad("signature does not verify with key %q", kid)
	}
	claims, err := decodeClaims(parts[1])
	if err != nil {
		return bad("%v", err)
	}
	if claims.Partner != partner {
		return bad("signed by %s for partner %s", partner, claims.Partner)
	}
	res.Claims, res.OK = claims, true
	return res
}

// applyWithdrawals judges the withdrawals of st.Protocol as of now: a
// verified withdrawal by a signatory from this protocol and version takes
// it out of force from its effective time (a reason once that time has
// come, a warning before, and Until moves to it); one that does not verify
// keeps the protocol out of force (fail closed: a withdrawal that cannot be
// checked is not ignored); one for another version or by a non-signatory
// is a warning and ignored.
func applyWithdrawals(st *Status, f findings, file string, now time.Time) {
	p := st.Protocol
	wfile := file + WithdrawalSuffix
	for _, w := range st.Withdrawals {
		who := cmp.Or(w.Partner, "?")
		switch {
		case !w.OK:
			msg := fmt.Sprintf("bad withdrawal from %s: %s", who, w.Reason)
			st.Reasons = append(st.Reasons, msg)
			f.add(FindingWithdrawal, SeverityError, wfile, "", w.Partner, w.KeyID, msg)
		case w.Claims.Protocol != p.ID || w.Claims.Version != p.Version:
			msg := fmt.Sprintf("withdrawal by %s from %s version %s does not apply to %s version %s (ignored)", who, w.Claims.Protocol, w.Claims.Version, p.ID, p.Version)
			st.Warnings = append(st.Warnings, msg)
			f.add(FindingWithdrawn, SeverityWarning, wfile, "", w.Partner, w.KeyID, msg)
		case !p.IsSignatory(w.Partner):
			msg := fmt.Sprintf("withdrawal by %s who is not a signatory (ignored)", who)
			st.Warnings = append(st.Warnings, msg)
			f.add(FindingWithdrawn, SeverityWarning, wfile, "", w.Partner, w.KeyID, msg)
		default:
			at := w.Claims.Effective
			if at.Before(st.Until) {
				st.Until = at
			}
			if !now.Before(at) {
				msg := fmt.Sprintf("withdrawn by %s from %s", w.Partner, NewDate(at))
				st.Reasons = append(st.Reasons, msg)
				f.add(FindingWithdrawn, SeverityError, wfile, "", w.Partner, w.KeyID, msg)
			} else {
				msg := fmt.Sprintf("%s withdraws from %s: the protocol stops being in force then", w.Partner, NewDate(at))
				st.Warnings = append(st.Warnings, msg)
				f.add(FindingWithdrawn, SeverityWarning, wfile, "", w.Partner, w.KeyID, msg)
			}
		}
	}
}

func base64URL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
