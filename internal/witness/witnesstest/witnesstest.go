// Package witnesstest is a transparency-log witness for tests: an
// Ed25519 key pair in the signed-note form and the cosignature/v1 signer
// and verifier of github.com/transparency-dev/formats, the standard
// implementation a real witness uses.
package witnesstest

import (
	"crypto/rand"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Witness is one witness's keys.
type Witness struct {
	Name string
	// VKey is the cosignature/v1 verifier key (algorithm 0x04), as a Trust
	// configures it in audit.witnesses.
	VKey     string
	Signer   note.Signer
	Verifier note.Verifier
}

// New makes a witness named name.
func New(t testing.TB, name string) *Witness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	cvkey, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fnote.NewVerifierForCosignatureV1(cvkey)
	if err != nil {
		t.Fatal(err)
	}
	return &Witness{Name: name, VKey: cvkey, Signer: s, Verifier: v}
}

// CosignBody returns the note of text signed by the witness alone (or
// with others too).
func CosignBody(t testing.TB, text string, signers ...note.Signer) []byte {
	t.Helper()
	out, err := note.Sign(&note.Note{Text: text}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
