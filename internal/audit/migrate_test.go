package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// legacyFixture writes a format-version log of n generated entries, with
// signed checkpoints at 10, 25 and n-3 (the last few entries after the
// last checkpoint), and returns its path and the entries as written.
func legacyFixture(t *testing.T, version uint64, n int) (string, []audit.Entry) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(version), 17))
	es := make([]audit.Entry, n)
	inputs := map[int]json.RawMessage{}
	for i := range es {
		es[i] = genEntry(r, i)
		if es[i].Kind == audit.KindDecision && version == 2 {
			inputs[i] = json.RawMessage(fmt.Sprintf(`{"purpose":%q,"requester":{"partner":%q}}`, es[i].Purpose, es[i].Requester))
		}
		if es[i].Kind == audit.KindDecision && version == 3 {
			es[i].InputResidual = audit.Residual(`["local_authority","police",[]]`)
		}
	}
	// Hostile text survives the old encodings too.
	es[3].Error = "field \"path\": <script>&amp;\u2028\x01 é"
	path := filepath.Join(t.TempDir(), fmt.Sprintf("audit-v%d.db", version))
	k, _ := gatewayKeys(t)
	err := audit.WriteLegacy(t.Context(), path, audit.LegacyFile{
		Version: version, Entries: es, Inputs: inputs, CheckpointAt: []uint64{10, 25, uint64(n - 3)},
		Signer: k, LogID: "trustgate", Time: cpNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The fixture is what that build wrote: this build refuses to open it.
	if _, err := audit.Open(path, audit.Options{ReadOnly: true}); !errors.Is(err, audit.ErrUnsupportedVersion) {
		t.Fatalf("Open of a format-%d file: err = %v, want ErrUnsupportedVersion", version, err)
	}
	return path, es
}

func TestMigrate(t *testing.T) {
	for _, version := range []uint64{2, 3} {
		t.Run(fmt.Sprintf("format %d", version), func(t *testing.T) {
			const n = 60
			oldPath, es := legacyFixture(t, version, n)
			oldBytes, err := os.ReadFile(oldPath)
			if err != nil {
				t.Fatal(err)
			}
			newPath := filepath.Join(t.TempDir(), "audit.db")
			rep, err := audit.Migrate(t.Context(), oldPath, newPath, audit.MigrateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OldFormat != version || rep.Entries != n || rep.Checkpoints != 3 || rep.NewSize != n+1 || rep.Checkpoint == "" {
				t.Fatalf("report %+v", rep)
			}
			// The old file is kept, unchanged and read-only.
			st, err := os.Stat(oldPath)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o444 {
				t.Fatalf("old file mode %v, want 0444", st.Mode().Perm())
			}
			if after, _ := os.ReadFile(oldPath); string(after) != string(oldBytes) {
				t.Fatal("Migrate changed the old file")
			}
			// The new log verifies end to end.
			vr := mustVerify(t, newPath)
			if vr.Entries != n+1 {
				t.Fatalf("verified %d entries, want %d", vr.Entries, n+1)
			}
			l := openLog(t, newPath, audit.Options{ReadOnly: true})
			first, err := l.Get(t.Context(), 1)
			if err != nil {
				t.Fatal(err)
			}
			// Entry 1 commits to the old log's final state and its last
			// signed checkpoint, which still verifies with the old key.
			oldCP, err := audit.ParseCheckpoint([]byte(first.OriginCheckpoint), nil)
			if err != nil {
				t.Fatal(err)
			}
			if first.Kind != audit.KindMigration || first.OriginFormat != int(version) || first.OriginSize != n ||
				first.OriginRoot != rep.OldRoot || first.OriginHash != rep.OldHead || oldCP.Size != n-3 {
				t.Fatalf("migration entry %+v (checkpoint size %d)", first, oldCP.Size)
			}
			// Every old entry is carried over in order, with its old seq
			// and hash, and the old hashes rebuild the old tree: the root
			// the migration entry records and the old checkpoint's root.
			var oldLeaves [][]byte
			for i, want := range es {
				got, err := l.Get(t.Context(), uint64(i+2))
				if err != nil {
					t.Fatal(err)
				}
				if got.OriginSeq != uint64(i+1) || got.RequestID != want.RequestID || got.Subject != want.Subject ||
					got.Error != want.Error || !got.Time.Equal(want.Time) || string(got.InputResidual) != string(want.InputResidual) {
					t.Fatalf("entry %d carried over as %+v, want %+v", i+2, got, want)
				}
				leaf, err := hex.DecodeString(got.OriginHash)
				if err != nil {
					t.Fatal(err)
				}
				oldLeaves = append(oldLeaves, leaf)
			}
			if root := hex.EncodeToString(rootOfLeafHashes(oldLeaves)); root != first.OriginRoot {
				t.Fatalf("old hashes give root %s, the migration entry says %s", root, first.OriginRoot)
			}
			if root := hex.EncodeToString(rootOfLeafHashes(oldLeaves[:oldCP.Size])); root != oldCP.Root {
				t.Fatalf("old hashes give root %s at %d, the old checkpoint says %s", root, oldCP.Size, oldCP.Root)
			}
			// An outsider reads the migrated log end to end from its export
			// (docs/audit-format.md alone): every leaf, the migration entry's
			// too, and the chain.
			var export bytes.Buffer
			if _, err := l.Export(t.Context(), &export, time.Time{}, time.Time{}, audit.FormatJSONL); err != nil {
				t.Fatal(err)
			}
			exported := filepath.Join(t.TempDir(), "export.jsonl")
			if err := os.WriteFile(exported, export.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("python3", "../../testdata/audit-format/verify_leaves.py", exported).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != fmt.Sprintf("%d leaves recomputed, chain intact", n+1) {
				t.Fatalf("the outsider's verifier on the migrated log: %v\n%s", err, out)
			}
			// A second migration of the same file is refused (new file
			// exists), as is migrating a current log.
			if _, err := audit.Migrate(t.Context(), oldPath, newPath, audit.MigrateOptions{}); err == nil {
				t.Fatal("Migrate over an existing file succeeded")
			}
			l.Close()
			if _, err := audit.Migrate(t.Context(), newPath, filepath.Join(t.TempDir(), "x.db"), audit.MigrateOptions{}); !errors.Is(err, audit.ErrUnsupportedVersion) {
				t.Fatalf("Migrate of a current log: err = %v", err)
			}
		})
	}
}

// A damaged old file is not migrated: nothing is written.
func TestMigrateRefusesDamagedLog(t *testing.T) {
	oldPath, _ := legacyFixture(t, 3, 30)
	_, set := gatewayKeys(t) // another key: the old checkpoints do not verify with it
	newPath := filepath.Join(t.TempDir(), "audit.db")
	if _, err := audit.Migrate(t.Context(), oldPath, newPath, audit.MigrateOptions{Keys: set}); !errors.Is(err, audit.ErrBadCheckpoint) {
		t.Fatalf("Migrate with the wrong keys: err = %v, want ErrBadCheckpoint", err)
	}
	alter(t, oldPath, func(entries, _ *bolt.Bucket) error {
		v := append([]byte(nil), entries.Get(key(7))...)
		return entries.Put(key(7), bytes.Replace(v, []byte(`"st":200`), []byte(`"st":403`), 1))
	})
	if _, err := audit.Migrate(t.Context(), oldPath, newPath, audit.MigrateOptions{}); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("Migrate of an altered log: err = %v, want ErrTampered", err)
	}
	if _, err := os.Stat(newPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed migration left %s", newPath)
	}
}

// rootOfLeafHashes is the RFC 9162 root over leaf hashes (section 2.1.1,
// with the leaf hashing already done).
func rootOfLeafHashes(hs [][]byte) []byte {
	if len(hs) == 1 {
		return hs[0]
	}
	k := 1
	for k*2 < len(hs) {
		k *= 2
	}
	s := sha256.Sum256(slices.Concat([]byte{1}, rootOfLeafHashes(hs[:k]), rootOfLeafHashes(hs[k:])))
	return s[:]
}
