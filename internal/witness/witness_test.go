package witness_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/keys"
	"github.com/childrens-trust/trustgate/internal/witness"
	"github.com/childrens-trust/trustgate/internal/witness/witnesstest"
)

const origin = "trust.example/audit"

type fixture struct {
	log  *audit.Log
	keys *keys.Local
	cp   *audit.Checkpoint
	dir  string
}

// newFixture is a real audit log of n entries with a signed checkpoint
// at size n, and local keys.
func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ks, err := keys.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, _, err := l.Append(ctx, &audit.Entry{Time: time.Date(2026, 11, 22, 12, 0, i, 0, time.UTC), RequestID: "req", Kind: audit.KindAccess, Method: "GET", Path: "/v1/protocols", Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := audit.NewCheckpointer(ctx, l, ks, audit.CheckpointOptions{LogID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{log: l, keys: ks, cp: cp, dir: dir}
}

func (f *fixture) open(t *testing.T, vkeys ...string) *witness.Notary {
	t.Helper()
	n, err := witness.Open(f.keys, f.log, witness.Options{Origin: origin, Witnesses: vkeys, Path: filepath.Join(f.dir, "witness.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func newWitness(t *testing.T, name string) (note.Signer, note.Verifier, string) {
	w := witnesstest.New(t, name)
	return w.Signer, w.Verifier, w.VKey
}

func TestNoteIsTheCheckpointSignedByTheNoteKey(t *testing.T) {
	f := newFixture(t, 5)
	n := f.open(t)
	ctx := context.Background()
	text, err := n.Note(ctx, f.cp)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := hex.DecodeString(f.cp.Root)
	if want := origin + "\n5\n" + base64.StdEncoding.EncodeToString(root) + "\n\n\u2014 " + origin + " "; !strings.HasPrefix(string(text), want) {
		t.Fatalf("note %q does not start %q", text, want)
	}
	vkey, err := n.LogKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, _, err := tlog.ParseCheckpoint(text, origin, v)
	if err != nil || cp.Size != 5 || hex.EncodeToString(cp.Hash) != f.cp.Root {
		t.Fatalf("standard verifier: %+v, %v", cp, err)
	}
	again, _ := n.Note(ctx, f.cp)
	if string(again) != string(text) {
		t.Fatal("the same checkpoint gave two notes")
	}
}

func TestAddCosignatures(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3)
	w1, w1v, w1key := newWitness(t, "w1.example/witness")
	w2, _, w2key := newWitness(t, "w2.example/witness")
	stranger, _, _ := newWitness(t, "stranger.example/witness")
	n := f.open(t, w1key, w2key)
	body, err := n.Body(f.cp)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(text string, s ...note.Signer) []byte { return witnesstest.CosignBody(t, text, s...) }
	otherRoot := base64.StdEncoding.EncodeToString(make([]byte, 32))
	corrupt := sign(string(body), w1)
	i := strings.LastIndex(string(corrupt), "w1.example/witness ") + len("w1.example/witness ") + 20
	if corrupt[i] == 'A' { // a letter inside the base64, changed for another
		corrupt[i] = 'B'
	} else {
		corrupt[i] = 'A'
	}

	for _, c := range []struct {
		name  string
		msg   []byte
		kind  error
		field string
	}{
		{"no signatures", []byte(body), witness.ErrMalformed, "body"},
		{"not three lines", sign("trust.example/audit\n3\n"), witness.ErrMalformed, "body"},
		{"another origin", sign("other/log\n3\n"+otherRoot+"\n", w1), witness.ErrWrongTree, "origin"},
		{"extension line", sign(string(body)+"extra\n", w1), witness.ErrWrongTree, "body"},
		{"unsigned size", sign(origin+"\n2\n"+otherRoot+"\n", w1), witness.ErrWrongTree, "size"},
		{"another root", sign(origin+"\n3\n"+otherRoot+"\n", w1), witness.ErrWrongTree, "root"},
		{"unknown witness", sign(string(body), stranger), witness.ErrUnknownWitness, "signature"},
		{"bad signature", corrupt, witness.ErrBadCosignature, "signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := n.AddCosignatures(ctx, c.msg)
			var we *witness.Error
			if !errors.As(err, &we) || !errors.Is(err, c.kind) || we.Field != c.field {
				t.Fatalf("%v, want %v on %s", err, c.kind, c.field)
			}
		})
	}
	text, _ := n.Note(ctx, f.cp)
	if strings.Count(string(text), "\u2014 ") != 1 {
		t.Fatalf("a refused cosignature was kept:\n%s", text)
	}

	// Both witnesses in one note, with the gateway's own line and a
	// stranger's among them: the two witnesses' lines are kept.
	size, names, err := n.AddCosignatures(ctx, sign(string(body), w1, w2, stranger))
	if err != nil || size != 3 || strings.Join(names, ",") != "w1.example/witness,w2.example/witness" {
		t.Fatalf("add: %d %v %v", size, names, err)
	}
	text, _ = n.Note(ctx, f.cp)
	vkey, _ := n.LogKey(ctx)
	logV, _ := note.NewVerifier(vkey)
	_, _, opened, err := tlog.ParseCheckpoint(text, origin, logV, w1v)
	if err != nil || len(opened.Sigs) != 2 || len(opened.UnverifiedSigs) != 1 {
		t.Fatalf("note with cosignatures: %v\n%s", err, text)
	}

	// Kept across a reopen; a witness dropped from the configuration is
	// no longer shown.
	n.Close()
	n = f.open(t, w1key)
	text, _ = n.Note(ctx, f.cp)
	if !strings.Contains(string(text), "\u2014 w1.example/witness ") || strings.Contains(string(text), "w2.example") {
		t.Fatalf("after reopening with w1 only:\n%s", text)
	}
}

func TestOpenRefusesBadWitnessKeys(t *testing.T) {
	f := newFixture(t, 1)
	_, _, w1key := newWitness(t, "w1.example/witness")
	_, _, same := newWitness(t, "w1.example/witness")
	_, _, self := newWitness(t, origin)
	for _, c := range []struct {
		name   string
		origin string
		vkeys  []string
		want   string
	}{
		{"not a key", origin, []string{"w1+00000000+AAAA"}, "not an Ed25519 signed-note verifier key"},
		{"two of one name", origin, []string{w1key, same}, "a second witness named"},
		{"the log's own name", origin, []string{self}, "the log's own origin"},
		{"bad origin", "has space", nil, "not a signed-note key name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := witness.Open(f.keys, f.log, witness.Options{Origin: c.origin, Witnesses: c.vkeys, Path: filepath.Join(t.TempDir(), "w.db")})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want %q", err, c.want)
			}
		})
	}
}
