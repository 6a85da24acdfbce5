package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// The tamper battery: a signed log, a checkpoint kept by a witness
// outside the gateway, and every kind of damage an attacker with the
// file (but not the signing key) can do. Verification must fail and
// name the entry (or, for a rewrite that recomputed the chain, the
// entries after the last checkpoint that still holds).

const (
	tamperN     = 60
	tamperEvery = 10
)

type signedLog struct {
	path     string
	keys     jwk.Set
	kid      string
	external []audit.ExternalCheckpoint // kept by a witness: sizes 30 and 60
}

var (
	signedOnce sync.Once
	signedFix  signedLog
	signedErr  error
	signedDir  string // removed by TestMain
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		journalChild() // journal_test.go: appends, then waits to be killed
	}
	code := m.Run()
	if signedDir != "" {
		_ = os.RemoveAll(signedDir)
	}
	os.Exit(code)
}

// pristineSigned builds (once per test binary) a log of tamperN varied
// entries with a checkpoint every tamperEvery entries, and returns a
// fresh copy of it.
func pristineSigned(t *testing.T) signedLog {
	t.Helper()
	signedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "audit-signed-")
		if err != nil {
			signedErr = err
			return
		}
		signedDir = dir
		signedFix.path = filepath.Join(dir, "audit.db")
		signedErr = buildSigned(t, &signedFix)
	})
	if signedErr != nil {
		t.Fatal(signedErr)
	}
	fix := signedFix
	fix.path = filepath.Join(t.TempDir(), "audit.db")
	copyFile(t, signedFix.path, fix.path)
	return fix
}

func buildSigned(t *testing.T, fix *signedLog) error {
	l, err := audit.Open(fix.path, audit.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	k, set := gatewayKeys(t)
	fix.keys = set
	c, err := audit.NewCheckpointer(t.Context(), l, k, audit.CheckpointOptions{LogID: "trustgate", Now: func() time.Time { return cpNow }})
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(7, 7))
	for i := range tamperN {
		e := genEntry(r, i)
		if _, _, err := l.Append(t.Context(), &e); err != nil {
			return err
		}
		if (i+1)%tamperEvery == 0 {
			cp, err := c.Checkpoint(t.Context())
			if err != nil {
				return err
			}
			fix.kid = cp.KeyID
			if cp.Size == 30 || cp.Size == tamperN {
				fix.external = append(fix.external, audit.ExternalCheckpoint{Name: fmt.Sprintf("witness-%d.jws", cp.Size), JWS: []byte(cp.JWS)})
			}
		}
	}
	return nil
}

func (f signedLog) verify(t *testing.T, withExternal bool) (*audit.Report, error) {
	t.Helper()
	o := audit.VerifyOptions{Keys: f.keys}
	if withExternal {
		o.Checkpoints = f.external
	}
	return audit.VerifyFile(t.Context(), f.path, o)
}

// wantRange checks a TamperError naming entries seq..last at checkpoint cp.
func wantRange(t *testing.T, err error, seq, last, cp uint64) {
	t.Helper()
	var te *audit.TamperError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *TamperError", err)
	}
	if te.Seq != seq || te.Last != last || te.Checkpoint != cp {
		t.Fatalf("TamperError names entries %d..%d at checkpoint %d, want %d..%d at %d: %v", te.Seq, te.Last, te.Checkpoint, seq, last, cp, err)
	}
}

// rebuild is the attacker's tool: a fresh log, made with this package,
// holding the entries of src (edited by edit, dropped where it returns
// false) up to n, with a fresh, self-consistent chain, tree and index.
// copyCheckpoints copies src's stored checkpoints up to maxCP.
func rebuild(t *testing.T, src string, n int, edit func(seq uint64, e *audit.Entry) bool, maxCP uint64) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "forged.db")
	in, err := audit.Open(src, audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := audit.Open(dst, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		e, err := in.Get(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil && !edit(seq, e) {
			continue
		}
		if _, _, err := out.Append(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	in.Close()
	out.Close()
	if maxCP > 0 {
		var cps [][2][]byte
		db, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_ = db.View(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("checkpoints")).ForEach(func(k, v []byte) error {
				if s := beUint(k); s <= maxCP {
					cps = append(cps, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
				}
				return nil
			})
		})
		db.Close()
		alterTx(t, dst, func(tx *bolt.Tx) error {
			for _, kv := range cps {
				if err := tx.Bucket([]byte("checkpoints")).Put(kv[0], kv[1]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return dst
}

func beUint(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return n
}

// alterTx runs fn in a write transaction on a closed log file.
func alterTx(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestPristineSignedLogVerifies(t *testing.T) {
	f := pristineSigned(t)
	rep, err := f.verify(t, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != tamperN || rep.Checkpoints != tamperN/tamperEvery || len(rep.External) != 2 || !rep.SignaturesChecked || rep.Latest.Size != tamperN {
		t.Fatalf("report %+v", rep)
	}
	if rep.Postings == 0 {
		t.Fatal("no postings checked")
	}
}

func TestTamperBattery(t *testing.T) {
	deny := func(seq uint64, e *audit.Entry) bool {
		if e.Decision == "allow" {
			e.Decision = "deny"
		}
		return true
	}
	type damage struct {
		name string
		// do damages the log at f.path (or returns another path).
		do func(t *testing.T, f signedLog) string
		// external: verify with the witness's checkpoints.
		external bool
		// the expected TamperError.
		seq, last, cp uint64
		// reason, if set, must appear in the message.
		reason string
	}
	flip := func(seq uint64, at int) func(*testing.T, signedLog) string {
		return func(t *testing.T, f signedLog) string {
			alter(t, f.path, func(entries, _ *bolt.Bucket) error {
				v := bytes.Clone(entries.Get(key(seq)))
				v[at%len(v)] ^= 0x20
				return entries.Put(key(seq), v)
			})
			return f.path
		}
	}
	tests := []damage{
		{name: "one byte changed in an entry", do: flip(23, 40), external: true, seq: 23},
		{name: "one byte changed in the first entry", do: flip(1, 10), external: true, seq: 1},
		{name: "one byte changed in the last entry", do: flip(tamperN, 30), external: true, seq: tamperN},
		{name: "an entry deleted", external: true, seq: 17, do: func(t *testing.T, f signedLog) string {
			alter(t, f.path, func(entries, _ *bolt.Bucket) error { return entries.Delete(key(17)) })
			return f.path
		}},
		{name: "two entries reordered", external: true, seq: 33, do: func(t *testing.T, f signedLog) string {
			alter(t, f.path, func(entries, _ *bolt.Bucket) error {
				a, b := bytes.Clone(entries.Get(key(33))), bytes.Clone(entries.Get(key(34)))
				if err := entries.Put(key(33), b); err != nil {
					return err
				}
				return entries.Put(key(34), a)
			})
			return f.path
		}},
		{name: "entries renumbered after a deletion, chain recomputed", external: true, seq: 1, last: 30, cp: 30, do: func(t *testing.T, f signedLog) string {
			return rebuild(t, f.path, tamperN, func(seq uint64, e *audit.Entry) bool { return seq != 25 }, 0)
		}},
		{name: "tail cut off, head edited (stored checkpoints left)", seq: 56, last: 60, cp: 60, do: func(t *testing.T, f signedLog) string {
			alter(t, f.path, func(entries, meta *bolt.Bucket) error {
				for s := uint64(56); s <= tamperN; s++ {
					if err := entries.Delete(key(s)); err != nil {
						return err
					}
				}
				if err := meta.Put([]byte("head_seq"), key(55)); err != nil {
					return err
				}
				return meta.Put([]byte("head_hash"), []byte(sha256Hex(entries.Get(key(55)))))
			})
			return f.path
		}},
		{name: "tail cut off cleanly (fresh file, later checkpoints dropped), caught by the witness", external: true, seq: 56, last: 60, cp: 60, do: func(t *testing.T, f signedLog) string {
			return rebuild(t, f.path, 55, nil, 50)
		}},
		{name: "whole log rewritten with a fresh chain, caught by the witness", external: true, seq: 1, last: 30, cp: 30, do: func(t *testing.T, f signedLog) string {
			return rebuild(t, f.path, tamperN, deny, 0)
		}},
		{name: "whole log rewritten, old checkpoints kept", seq: 1, last: 10, cp: 10, do: func(t *testing.T, f signedLog) string {
			return rebuild(t, f.path, tamperN, deny, tamperN)
		}},
		{name: "log rewritten from entry 35, old checkpoints kept", seq: 31, last: 40, cp: 40, do: func(t *testing.T, f signedLog) string {
			return rebuild(t, f.path, tamperN, func(seq uint64, e *audit.Entry) bool {
				if seq >= 35 {
					e.RequestID += "-forged"
				}
				return true
			}, tamperN)
		}},
		{name: "log rewritten and checkpoints re-signed with another key under the gateway's kid", cp: 60, reason: "signature does not verify", do: func(t *testing.T, f signedLog) string {
			p := rebuild(t, f.path, tamperN, deny, 0)
			l, err := audit.Open(p, audit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			c := newCheckpointer(t, l, newForger(t, f.kid), audit.CheckpointOptions{})
			if _, err := c.Checkpoint(t.Context()); err != nil { // size 60 only: fine, one is enough
				t.Fatal(err)
			}
			l.Close()
			return p
		}},
		{name: "stored checkpoint altered", cp: 20, reason: "forged or altered", do: func(t *testing.T, f signedLog) string {
			alter(t, f.path, func(_, _ *bolt.Bucket) error { return nil })
			alterTx(t, f.path, func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("checkpoints"))
				v := bytes.Clone(b.Get(key(20)))
				v[len(v)-5] ^= 1
				return b.Put(key(20), v)
			})
			return f.path
		}},
		{name: "stored Merkle node altered", reason: "stored Merkle node", do: func(t *testing.T, f signedLog) string {
			alterTx(t, f.path, func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("tree"))
				k, v := b.Cursor().First()
				v = bytes.Clone(v)
				v[0] ^= 1
				return b.Put(bytes.Clone(k), v)
			})
			return f.path
		}},
		{name: "tree state in meta altered", reason: "tree range", do: func(t *testing.T, f signedLog) string {
			alterTx(t, f.path, func(tx *bolt.Tx) error {
				v := bytes.Clone(tx.Bucket([]byte("meta")).Get([]byte("tree_range")))
				v[3] ^= 1
				return tx.Bucket([]byte("meta")).Put([]byte("tree_range"), v)
			})
			return f.path
		}},
		{name: "an entry removed from the kind index", reason: "kind index is wrong for entry", do: func(t *testing.T, f signedLog) string {
			alterTx(t, f.path, func(tx *bolt.Tx) error {
				c := tx.Bucket([]byte("postings")).Cursor()
				for k, v := c.Seek([]byte{'k'}); k != nil && k[0] == 'k'; k, v = c.Next() {
					if len(v) > 0 && v[len(v)-1] < 0x80 { // drop the last one-byte gap: the chunk's newest entry
						return c.Bucket().Put(bytes.Clone(k), bytes.Clone(v[:len(v)-1]))
					}
				}
				return errors.New("no multi-entry kind chunk")
			})
			return f.path
		}},
		{name: "time index edited", reason: "time index", do: func(t *testing.T, f signedLog) string {
			alterTx(t, f.path, func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("times"))
				k, v := b.Cursor().First()
				v = bytes.Clone(v)
				v[7]++
				return b.Put(bytes.Clone(k), v)
			})
			return f.path
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := pristineSigned(t)
			f.path = tc.do(t, f)
			rep, err := f.verify(t, tc.external)
			if err == nil {
				t.Fatalf("verification passed a damaged log: %+v", rep)
			}
			if !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("err = %v, want ErrTampered", err)
			}
			wantRange(t, err, tc.seq, tc.last, tc.cp)
			if tc.reason != "" && !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v, want it to say %q", err, tc.reason)
			}
			t.Log(err)
		})
	}
}

// TestRewriteNeedsACheckpoint pins the limit: a clean rewrite (fresh
// chain, tree and index) with no checkpoint to compare with verifies.
// That is why checkpoints are pushed outside the gateway.
func TestRewriteNeedsACheckpoint(t *testing.T) {
	f := pristineSigned(t)
	p := rebuild(t, f.path, tamperN, func(_ uint64, e *audit.Entry) bool { e.Decision = "deny"; return true }, 0)
	if _, err := audit.VerifyFile(t.Context(), p, audit.VerifyOptions{Keys: f.keys}); err != nil {
		t.Fatalf("a clean rewrite without checkpoints: %v", err)
	}
	// A forged external checkpoint does not help the attacker either.
	forged, err := newForger(t, f.kid).Sign(t.Context(), []byte(`{"log":"trustgate","size":60,"root":"`+strings.Repeat("0", 64)+`","head":"`+strings.Repeat("0", 64)+`","time":"2026-11-22T12:00:00Z"}`), audit.CheckpointType)
	if err != nil {
		t.Fatal(err)
	}
	_, err = audit.VerifyFile(t.Context(), f.path, audit.VerifyOptions{Keys: f.keys, Checkpoints: []audit.ExternalCheckpoint{{Name: "forged.jws", JWS: []byte(forged)}}})
	if !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Fatalf("a forged external checkpoint: err = %v, want ErrBadCheckpoint", err)
	}
}

// TestRandomByteFlips flips one byte of one entry, over many seeds, and
// checks that verification names exactly that entry.
func TestRandomByteFlips(t *testing.T) {
	seeds := 100
	if testing.Short() {
		seeds = 30
	}
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 99))
		seq := 1 + r.Uint64N(tamperN)
		pos, x := r.Float64(), byte(1+r.IntN(255))
		f := pristineSigned(t)
		var at int
		alter(t, f.path, func(entries, _ *bolt.Bucket) error {
			v := bytes.Clone(entries.Get(key(seq)))
			at = int(pos * float64(len(v)))
			v[at] ^= x
			return entries.Put(key(seq), v)
		})
		_, err := f.verify(t, true)
		var te *audit.TamperError
		if !errors.As(err, &te) || te.Seq != seq {
			t.Fatalf("seed %d: byte %d of entry %d xor %#x: err = %v, want entry %d named", seed, at, seq, x, err, seq)
		}
	}
}

// TestHeadsDump checks the chain heads dump: written every
// headsDumpEvery entries, checked by Verify, used on reopen.
func TestHeadsDump(t *testing.T) {
	audit.SetHeadsDumpEvery(t, 16)
	path := tempPath(t)
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range 100 {
		e := genEntry(r, i)
		if _, _, err := l.Append(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, path)
	alterTx(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("heads"))
		k, v := b.Cursor().Last()
		if k == nil {
			return errors.New("no dump")
		}
		v = bytes.Clone(v)
		v[len(v)-1]-- // one head one entry back
		return b.Put(bytes.Clone(k), v)
	})
	_, err = audit.Verify(t.Context(), path, audit.Options{})
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "chain heads dump") {
		t.Fatalf("err = %v, want the heads dump named", err)
	}
}

// TestForgedResignedRewrite is issue 15's case: with the local key
// store the checkpoint key sits beside the log, so an attacker with the
// disk can rewrite the log from entry 31 and re-sign every stored
// checkpoint after it. The external checkpoints (30 and 60) are
// authoritative: the rewrite is located from the last external one that
// still matches (30) to the earliest that does not (60), not from the
// forged stored checkpoint at 50, which matches the forgery.
func TestForgedResignedRewrite(t *testing.T) {
	dir := t.TempDir()
	genuine := filepath.Join(dir, "audit.db")
	k, set := gatewayKeys(t)
	var external []audit.ExternalCheckpoint
	write := func(path string, edit func(seq uint64, e *audit.Entry), src *audit.Log) {
		l := openLog(t, path, audit.Options{})
		defer l.Close()
		c := newCheckpointer(t, l, k, audit.CheckpointOptions{})
		r := rand.New(rand.NewPCG(7, 7))
		for i := range tamperN {
			e := genEntry(r, i)
			if src != nil {
				got, err := src.Get(t.Context(), uint64(i+1))
				if err != nil {
					t.Fatal(err)
				}
				e = *got
				edit(uint64(i+1), &e)
			}
			if _, _, err := l.Append(t.Context(), &e); err != nil {
				t.Fatal(err)
			}
			if (i+1)%tamperEvery == 0 {
				cp, err := c.Checkpoint(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if src == nil && (cp.Size == 30 || cp.Size == tamperN) {
					external = append(external, audit.ExternalCheckpoint{Name: fmt.Sprintf("witness-%d.jws", cp.Size), JWS: []byte(cp.JWS)})
				}
			}
		}
	}
	write(genuine, nil, nil)
	src := openLog(t, genuine, audit.Options{ReadOnly: true})
	forged := filepath.Join(dir, "forged.db")
	write(forged, func(seq uint64, e *audit.Entry) {
		if seq == 31 {
			e.Purpose = "early_help"
		}
	}, src)
	src.Close()

	if _, err := audit.VerifyFile(t.Context(), forged, audit.VerifyOptions{Keys: set}); err != nil {
		t.Fatalf("without the external checkpoints a re-signed forgery cannot be told (docs/auditing.md), yet verify failed: %v", err)
	}
	_, err := audit.VerifyFile(t.Context(), forged, audit.VerifyOptions{Keys: set, Checkpoints: external})
	wantRange(t, err, 31, tamperN, tamperN)
	if !strings.Contains(err.Error(), "external checkpoint at 30 still matches") {
		t.Fatalf("err = %v, want the external checkpoint at 30 named as the last that matches", err)
	}
	// Only the later witness: the whole log is in doubt, not 51..60.
	_, err = audit.VerifyFile(t.Context(), forged, audit.VerifyOptions{Keys: set, Checkpoints: external[1:]})
	wantRange(t, err, 1, tamperN, tamperN)
}
