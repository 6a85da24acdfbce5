package vault

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

var errShortBatch = errors.New("vault answered fewer batch results than inputs")

// signingTypes is the closed list of transit key types the gateway signs
// with, and the JWS algorithm each gives.
var signingTypes = map[string]jwa.SignatureAlgorithm{
	"ecdsa-p256": jwa.ES256,
	"ed25519":    jwa.EdDSA,
}

// pseudonymType is the transit key type pseudonyms are HMACs under;
// noteType the type of the key checkpoint notes are signed with.
const (
	pseudonymType = "hmac"
	noteType      = "ed25519"
)

// keyInfo is what the store uses of a transit key's metadata
// (GET MOUNT/keys/NAME).
type keyInfo struct {
	Name                 string                     `json:"name"`
	Type                 string                     `json:"type"`
	LatestVersion        int                        `json:"latest_version"`
	MinDecryptionVersion int                        `json:"min_decryption_version"`
	MinEncryptionVersion int                        `json:"min_encryption_version"`
	MinAvailableVersion  int                        `json:"min_available_version"`
	Exportable           bool                       `json:"exportable"`
	AllowPlaintextBackup bool                       `json:"allow_plaintext_backup"`
	DeletionAllowed      bool                       `json:"deletion_allowed"`
	Keys                 map[string]json.RawMessage `json:"keys"`
}

// versionKey is one asymmetric key version in the metadata.
type versionKey struct {
	PublicKey string `json:"public_key"`
}

// transit performs the store's calls to the transit engine.
type transit struct {
	client *api.Client
	addr   string
	mount  string
	// onResult sees the outcome of every call (health, re-login).
	onResult func(err error)
}

func (t *transit) write(ctx context.Context, op, path string, body map[string]any, out any) error {
	sec, err := t.client.Logical().WriteWithContext(ctx, path, body)
	if err != nil {
		e := classify(t.addr, op, err)
		t.onResult(e)
		return e
	}
	if sec == nil || sec.Data == nil {
		e := invalid(t.addr, op, "empty answer")
		t.onResult(e)
		return e
	}
	if err := remarshal(sec.Data, out); err != nil {
		e := invalid(t.addr, op, "%v", err)
		t.onResult(e)
		return e
	}
	t.onResult(nil)
	return nil
}

// readKey reads a transit key's metadata.
func (t *transit) readKey(ctx context.Context, name string) (*keyInfo, error) {
	op := "read key " + name
	sec, err := t.client.Logical().ReadWithContext(ctx, t.mount+"/keys/"+name)
	if err != nil {
		e := classify(t.addr, op, err)
		t.onResult(e)
		return nil, e
	}
	if sec == nil || sec.Data == nil {
		e := &Error{Op: op, Addr: t.addr, Kind: KindRejected, Status: 404, Reason: fmt.Sprintf("no transit key %q at mount %q (run `trustgate vault setup`)", name, t.mount)}
		t.onResult(e)
		return nil, e
	}
	var k keyInfo
	if err := remarshal(sec.Data, &k); err != nil {
		e := invalid(t.addr, op, "%v", err)
		t.onResult(e)
		return nil, e
	}
	t.onResult(nil)
	return &k, nil
}

type batchAnswer struct {
	BatchResults []struct {
		Signature  string `json:"signature"`
		HMAC       string `json:"hmac"`
		KeyVersion int    `json:"key_version"`
		Error      string `json:"error"`
	} `json:"batch_results"`
}

func batchInput(inputs [][]byte) []map[string]string {
	in := make([]map[string]string, len(inputs))
	for i, b := range inputs {
		in[i] = map[string]string{"input": base64.StdEncoding.EncodeToString(b)}
	}
	return in
}

// sign signs every input with version of key (JWS marshaling: the
// signature is base64url of the raw signature, r‖s for ECDSA) and returns
// the base64url signatures.
func (t *transit) sign(ctx context.Context, key, keyType string, version int, inputs [][]byte) ([]result, error) {
	body := map[string]any{
		"key_version":          version,
		"marshaling_algorithm": "jws",
		"batch_input":          batchInput(inputs),
	}
	if keyType == "ecdsa-p256" {
		body["hash_algorithm"] = "sha2-256"
	}
	var ans batchAnswer
	if err := t.write(ctx, "sign", t.mount+"/sign/"+key, body, &ans); err != nil {
		return nil, err
	}
	if len(ans.BatchResults) != len(inputs) {
		return nil, invalid(t.addr, "sign", "%d results for %d inputs", len(ans.BatchResults), len(inputs))
	}
	out := make([]result, len(inputs))
	for i, r := range ans.BatchResults {
		if r.Error != "" {
			out[i].err = &Error{Op: "sign", Addr: t.addr, Kind: KindRejected, Reason: oneLine(r.Error)}
			continue
		}
		sig, err := unprefix(r.Signature, version)
		if err == nil {
			var raw []byte
			raw, err = base64.RawURLEncoding.DecodeString(sig)
			if err == nil && len(raw) != 64 {
				err = fmt.Errorf("signature is %d bytes, want 64", len(raw))
			}
		}
		if err != nil {
			out[i].err = invalid(t.addr, "sign", "%v", err)
			continue
		}
		out[i].out = sig
	}
	return out, nil
}

// hmac computes HMAC-SHA256 of every input under version of key and
// returns each as 64 lowercase hex characters (the format of keys.Local).
func (t *transit) hmac(ctx context.Context, key string, version int, inputs [][]byte) ([]result, error) {
	body := map[string]any{
		"key_version": version,
		"algorithm":   "sha2-256",
		"batch_input": batchInput(inputs),
	}
	var ans batchAnswer
	if err := t.write(ctx, "hmac", t.mount+"/hmac/"+key, body, &ans); err != nil {
		return nil, err
	}
	if len(ans.BatchResults) != len(inputs) {
		return nil, invalid(t.addr, "hmac", "%d results for %d inputs", len(ans.BatchResults), len(inputs))
	}
	out := make([]result, len(inputs))
	for i, r := range ans.BatchResults {
		if r.Error != "" {
			out[i].err = &Error{Op: "hmac", Addr: t.addr, Kind: KindRejected, Reason: oneLine(r.Error)}
			continue
		}
		mac, err := unprefix(r.HMAC, version)
		if err == nil {
			var raw []byte
			raw, err = base64.StdEncoding.DecodeString(mac)
			if err == nil && len(raw) != 32 {
				err = fmt.Errorf("hmac is %d bytes, want 32", len(raw))
			}
			mac = hex.EncodeToString(raw)
		}
		if err != nil {
			out[i].err = invalid(t.addr, "hmac", "%v", err)
			continue
		}
		out[i].out = mac
	}
	return out, nil
}

// unprefix strips "vault:vN:" and checks N is the version asked for.
func unprefix(s string, version int) (string, error) {
	want := "vault:v" + strconv.Itoa(version) + ":"
	if !strings.HasPrefix(s, want) {
		return "", fmt.Errorf("answer %.12q… is not under key version %d", s, version)
	}
	return s[len(want):], nil
}

// publicJWK turns version v of an asymmetric transit key into a public JWK
// with kid "NAME:v" and the key type's algorithm.
func publicJWK(k *keyInfo, v int) (jwk.Key, error) {
	raw, ok := k.Keys[strconv.Itoa(v)]
	if !ok {
		return nil, fmt.Errorf("version %d of %s is not in its metadata", v, k.Name)
	}
	var vk versionKey
	if err := json.Unmarshal(raw, &vk); err != nil {
		return nil, fmt.Errorf("version %d of %s: %w", v, k.Name, err)
	}
	var pub any
	switch k.Type {
	case "ecdsa-p256":
		blk, _ := pem.Decode([]byte(vk.PublicKey))
		if blk == nil {
			return nil, fmt.Errorf("version %d of %s: public key is not PEM", v, k.Name)
		}
		p, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("version %d of %s: %w", v, k.Name, err)
		}
		ec, ok := p.(*ecdsa.PublicKey)
		if !ok || ec.Curve.Params().Name != "P-256" {
			return nil, fmt.Errorf("version %d of %s: not a P-256 key", v, k.Name)
		}
		pub = ec
	case "ed25519":
		b, err := base64.StdEncoding.DecodeString(vk.PublicKey)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("version %d of %s: not an Ed25519 public key", v, k.Name)
		}
		pub = ed25519.PublicKey(b)
	default:
		return nil, fmt.Errorf("%s is a %s key", k.Name, k.Type)
	}
	j, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, err
	}
	for name, val := range map[string]any{jwk.KeyIDKey: kid(k.Name, v), jwk.AlgorithmKey: signingTypes[k.Type], jwk.KeyUsageKey: "sig"} {
		if err := j.Set(name, val); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// kid names a key version: "NAME:VERSION".
func kid(name string, v int) string { return name + ":" + strconv.Itoa(v) }

// verifiable is the range of versions still allowed to verify: from the
// higher of min_decryption_version and min_available_version to latest.
func verifiable(k *keyInfo) (lo, hi int) {
	lo = max(k.MinDecryptionVersion, k.MinAvailableVersion, 1)
	return lo, k.LatestVersion
}

func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}
