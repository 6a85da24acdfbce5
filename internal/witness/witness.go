package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/boltfile"
	"github.com/childrens-trust/trustgate/internal/keys"
)

// Errors of AddCosignatures, each wrapped in an *Error.
var (
	ErrMalformed      = errors.New("not a checkpoint note")
	ErrWrongTree      = errors.New("not a checkpoint this log signed")
	ErrUnknownWitness = errors.New("no signature of a witness the Trust configures")
	ErrBadCosignature = errors.New("cosignature does not verify")
)

// Error is a refused cosignature: Kind is one of the errors above; Field
// names the part of the note at fault.
type Error struct {
	Kind   error
	Field  string
	Reason string
}

func (e *Error) Error() string { return "witness: " + e.Kind.Error() + ": " + e.Reason }
func (e *Error) Unwrap() error { return e.Kind }

func refuse(kind error, field, format string, a ...any) *Error {
	return &Error{Kind: kind, Field: field, Reason: fmt.Sprintf(format, a...)}
}

// Checkpoints is what the notary reads of the audit log (*audit.Log):
// the stored checkpoint of a size, or an error wrapping
// audit.ErrNoCheckpoint.
type Checkpoints interface {
	CheckpointAt(ctx context.Context, size uint64) (*audit.Checkpoint, error)
}

// Options configure a Notary.
type Options struct {
	// Origin is the first line of every note, and the note key's name
	// (config audit.origin).
	Origin string
	// Witnesses are the verifier keys of the witnesses whose
	// cosignatures are collected, in the signed-note vkey form
	// NAME+HASH+BASE64 (Ed25519, algorithm 0x01 or cosignature/v1 0x04).
	Witnesses []string
	// Path is the bbolt file the cosignatures are kept in.
	Path        string
	OpenTimeout time.Duration
}

// MaxWitnesses bounds Options.Witnesses (a note holds at most 100
// signatures).
const MaxWitnesses = 50

// Witness is one configured witness.
type Witness struct {
	Name string `json:"name"`
	Key  string `json:"key"` // the vkey as configured
}

// Notary makes checkpoint notes and keeps their cosignatures. Safe for
// concurrent use.
type Notary struct {
	origin    string
	signer    keys.NoteSigner
	log       Checkpoints
	witnesses []Witness
	verifiers map[string]note.Verifier // by witness name
	db        *bolt.DB
}

var (
	bucketMeta  = []byte("meta")
	bucketCosig = []byte("cosignatures")
	keyVersion  = []byte("version")
)

const formatVersion = 1

// ParseWitnesses checks witness vkeys: each parses as a cosignature/v1
// verifier key, names are distinct and none is origin.
func ParseWitnesses(origin string, vkeys []string) ([]Witness, map[string]note.Verifier, error) {
	if len(vkeys) > MaxWitnesses {
		return nil, nil, fmt.Errorf("%d witnesses: at most %d", len(vkeys), MaxWitnesses)
	}
	var ws []Witness
	vs := map[string]note.Verifier{}
	for i, k := range vkeys {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return nil, nil, fmt.Errorf("witness %d: %q is not an Ed25519 signed-note verifier key (NAME+HASH+BASE64): %v", i+1, k, err)
		}
		switch {
		case v.Name() == origin:
			return nil, nil, fmt.Errorf("witness %d: named %q, the log's own origin", i+1, v.Name())
		case vs[v.Name()] != nil:
			return nil, nil, fmt.Errorf("witness %d: a second witness named %q", i+1, v.Name())
		}
		vs[v.Name()] = v
		ws = append(ws, Witness{Name: v.Name(), Key: k})
	}
	return ws, vs, nil
}

// Open opens (creating) the cosignature file and returns a Notary.
func Open(signer keys.NoteSigner, log Checkpoints, o Options) (*Notary, error) {
	if vkey, err := note.NewEd25519VerifierKey(o.Origin, make([]byte, 32)); err != nil || !validName(vkey) {
		return nil, fmt.Errorf("witness: origin %q is not a signed-note key name (no spaces, no '+')", o.Origin)
	}
	ws, vs, err := ParseWitnesses(o.Origin, o.Witnesses)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = time.Second
	}
	db, err := boltfile.Open(o.Path, o.OpenTimeout, bucketMeta, keyVersion, formatVersion, bucketCosig)
	if err != nil {
		return nil, fmt.Errorf("witness: open %s: %w", o.Path, err)
	}
	return &Notary{origin: o.Origin, signer: signer, log: log, witnesses: ws, verifiers: vs, db: db}, nil
}

// validName reports whether note's own parser takes vkey's name.
func validName(vkey string) bool {
	_, err := note.NewVerifier(vkey)
	return err == nil
}

// Close closes the cosignature file.
func (n *Notary) Close() error { return n.db.Close() }

// Snapshot copies the cosignature file consistently while in use
// (boltfile.Snapshot), for the data directory's backup.
func (n *Notary) Snapshot(start func(size int64) (io.Writer, error)) (int64, error) {
	return boltfile.Snapshot(n.db, start)
}

// Origin is the notes' origin line.
func (n *Notary) Origin() string { return n.origin }

// Witnesses are the configured witnesses, in configuration order.
func (n *Notary) Witnesses() []Witness { return slices.Clone(n.witnesses) }

// LogKey is the gateway's note verifier key (NAME+HASH+BASE64), which
// standard note verifiers take.
func (n *Notary) LogKey(ctx context.Context) (string, error) {
	pub, err := n.signer.NoteKey(ctx)
	if err != nil {
		return "", fmt.Errorf("witness: note key: %w", err)
	}
	vkey, err := note.NewEd25519VerifierKey(n.origin, pub)
	if err != nil {
		return "", fmt.Errorf("witness: note key: %w", err)
	}
	return vkey, nil
}

// Body is the checkpoint's note text (c2sp.org/tlog-checkpoint): origin,
// size and base64 root, each ending in a newline.
func (n *Notary) Body(cp *audit.Checkpoint) ([]byte, error) {
	root, err := hex.DecodeString(cp.Root)
	if err != nil || len(root) != 32 {
		return nil, fmt.Errorf("witness: checkpoint %d: root %q is not 32 bytes of hex", cp.Size, cp.Root)
	}
	return tlog.Checkpoint{Origin: n.origin, Size: cp.Size, Hash: root}.Marshal(), nil
}

// Note is the signed note of cp (a checkpoint the log stored): its body,
// the gateway's signature, and every cosignature collected for its size,
// by witness name.
func (n *Notary) Note(ctx context.Context, cp *audit.Checkpoint) ([]byte, error) {
	body, err := n.Body(cp)
	if err != nil {
		return nil, err
	}
	vkey, err := n.LogKey(ctx)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	signed, err := note.Sign(&note.Note{Text: string(body)}, &ctxSigner{ctx: ctx, name: n.origin, hash: v.KeyHash(), s: n.signer})
	if err != nil {
		return nil, fmt.Errorf("witness: sign note %d: %w", cp.Size, err)
	}
	var out bytes.Buffer
	out.Write(signed)
	err = n.db.View(func(tx *bolt.Tx) error {
		prefix := binary.BigEndian.AppendUint64(nil, cp.Size)
		c := tx.Bucket(bucketCosig).Cursor()
		for k, val := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, val = c.Next() {
			if _, ok := n.verifiers[string(k[8:])]; !ok {
				continue // a witness no longer configured
			}
			fmt.Fprintf(&out, "\u2014 %s %s\n", k[8:], val)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("witness: read cosignatures: %w", err)
	}
	return out.Bytes(), nil
}

// ctxSigner is the note key as a note.Signer, for one call.
type ctxSigner struct {
	ctx  context.Context
	name string
	hash uint32
	s    keys.NoteSigner
}

func (c *ctxSigner) Name() string                    { return c.name }
func (c *ctxSigner) KeyHash() uint32                 { return c.hash }
func (c *ctxSigner) Sign(msg []byte) ([]byte, error) { return c.s.SignNote(c.ctx, msg) }

// AddCosignatures takes a checkpoint note as a witness returns it (the
// body and one or more signature lines; the gateway's own and others'
// may be among them) and stores every cosignature in it that verifies
// with a configured witness's key. It returns the witnesses whose
// cosignature was stored, and the size they co-signed.
func (n *Notary) AddCosignatures(ctx context.Context, msg []byte) (uint64, []string, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return 0, nil, refuse(ErrMalformed, "body", "no blank line between the checkpoint and its signatures (c2sp.org/signed-note)")
	}
	var cp tlog.Checkpoint
	rest, err := cp.Unmarshal(msg[:i+1])
	if err != nil {
		return 0, nil, refuse(ErrMalformed, "body", "%v", err)
	}
	if cp.Origin != n.origin {
		return 0, nil, refuse(ErrWrongTree, "origin", "origin %q is not this log's (%q)", clip(cp.Origin), n.origin)
	}
	if len(rest) > 0 {
		return 0, nil, refuse(ErrWrongTree, "body", "the note has extension lines; this log's checkpoints have none")
	}
	stored, err := n.log.CheckpointAt(ctx, cp.Size)
	if errors.Is(err, audit.ErrNoCheckpoint) {
		return 0, nil, refuse(ErrWrongTree, "size", "this log signed no checkpoint of size %d", cp.Size)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("witness: %w", err)
	}
	want, err := n.Body(stored)
	if err != nil {
		return 0, nil, err
	}
	if !bytes.Equal(want, msg[:i+1]) {
		return 0, nil, refuse(ErrWrongTree, "root", "root %s is not this log's root at size %d (%s)", base64.StdEncoding.EncodeToString(cp.Hash), cp.Size, stored.Root)
	}
	var vs []note.Verifier
	for _, w := range n.witnesses {
		vs = append(vs, n.verifiers[w.Name])
	}
	opened, err := note.Open(msg, note.VerifierList(vs...))
	var ue *note.UnverifiedNoteError
	var ie *note.InvalidSignatureError
	switch {
	case errors.As(err, &ue):
		var names []string
		for _, s := range ue.Note.UnverifiedSigs {
			names = append(names, clip(s.Name))
		}
		return 0, nil, refuse(ErrUnknownWitness, "signature", "signed by %s; the Trust's witnesses are %s", orNone(names), orNone(n.names()))
	case errors.As(err, &ie):
		return 0, nil, refuse(ErrBadCosignature, "signature", "the signature of witness %q (key hash %08x) does not verify as a cosignature/v1 of this checkpoint", ie.Name, ie.Hash)
	case err != nil:
		return 0, nil, refuse(ErrMalformed, "signature", "%v", err)
	}
	var names []string
	err = n.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCosig)
		for _, s := range opened.Sigs {
			k := append(binary.BigEndian.AppendUint64(nil, cp.Size), s.Name...)
			if err := b.Put(k, []byte(s.Base64)); err != nil {
				return err
			}
			names = append(names, s.Name)
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("witness: store cosignatures: %w", err)
	}
	return cp.Size, names, nil
}

func (n *Notary) names() []string {
	var out []string
	for _, w := range n.witnesses {
		out = append(out, w.Name)
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
