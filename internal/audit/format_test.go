package audit_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// vectorsPath holds the test vectors docs/audit-format.md references:
// entries as the API and the export show them (one JSON object a line),
// each with its stored bytes and leaf hash.
const vectorsPath = "../../testdata/audit-format/vectors.jsonl"

// hostileEntries are entries with every kind of byte sequence a caller
// can make arrive: invalid UTF-8, control characters, HTML and JavaScript
// separators, astral characters, a long field, an empty entry.
func hostileEntries() []audit.Entry {
	at := time.Date(2026, 11, 22, 9, 28, 57, 46163606, time.UTC)
	typ := audit.TypicalEntry(1)
	typ.Time = at
	long := strings.Repeat("ab\u00e9", 1500)
	return []audit.Entry{
		typ,
		{Time: at.Add(time.Second), RequestID: "0a1b2c3d4e5f60718293a4b5", Kind: audit.KindRejected, Method: "GET",
			Path: "/v1/\xff\xfe/\xc3\x28/\xe2\x82", Status: 404, Requester: "exley-csc", Error: "no route"},
		{Time: at.Add(2 * time.Second), RequestID: "0a1b2c3d4e5f60718293a4b6", Kind: audit.KindRejected, Method: "POST",
			Path: "/v1/decisions", Status: 400, Requester: "exley-csc",
			Error: "field \"purpose\": \"<script>&amp;</script>\" \\ / \b\f\n\r\t \x00\x01\x1f\x7f \u2028\u2029 \ufeff é 😀 \U0010ffff"},
		{Time: at.Add(3 * time.Second), RequestID: "0a1b2c3d4e5f60718293a4b7", Kind: audit.KindRejected, Status: 400, Error: long},
		{Time: time.Unix(0, 0).UTC(), Kind: audit.KindAuthFailure},
		{Time: at.Add(4 * time.Second), RequestID: "x", Kind: audit.KindDecision, Decision: "allow", Protocol: "p",
			ProtocolVersion: "1", Rule: "r", Reasons: []string{"allowed by p v1 rule r", "\x1e\x1f"},
			InputResidual: audit.Residual(`["local_authority","police",[[1795339737.046163606]]]`), Status: 200},
	}
}

type vector struct {
	Entry  json.RawMessage `json:"entry"`
	Stored string          `json:"stored"`
	Leaf   string          `json:"leaf"`
}

// The code gives exactly the committed vectors, and the vectors are
// right by the document's rule: leaf = SHA-256(0x00 || JCS(entry without
// hash)), and hash = leaf.
func TestFormatVectors(t *testing.T) {
	path := tempPath(t)
	l := openLog(t, path, audit.Options{})
	for _, e := range hostileEntries() {
		if _, _, err := l.Append(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
	}
	var got bytes.Buffer
	n, _ := l.Head()
	for seq := uint64(1); seq <= n; seq++ {
		e, err := l.Get(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := l.Stored(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var eb bytes.Buffer
		enc := json.NewEncoder(&eb)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e); err != nil {
			t.Fatal(err)
		}
		line, err := json.Marshal(vector{Entry: bytes.TrimSpace(eb.Bytes()), Stored: string(stored), Leaf: e.Hash})
		if err != nil {
			t.Fatal(err)
		}
		got.Write(line)
		got.WriteByte('\n')
		if !bytes.Equal(canonical(t, *e), stored) {
			t.Fatalf("entry %d: the stored bytes are not the canonical form of the entry as shown:\n%s\n%s", seq, stored, canonical(t, *e))
		}
		if sum := sha256.Sum256(append([]byte{0}, stored...)); hex.EncodeToString(sum[:]) != e.Hash {
			t.Fatalf("entry %d: hash is not the leaf hash", seq)
		}
	}
	if os.Getenv("TRUSTGATE_UPDATE_VECTORS") == "1" {
		if err := os.MkdirAll(filepath.Dir(vectorsPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("the code no longer gives the committed vectors %s (a format change needs a new format version):\n%s", vectorsPath, got.Bytes())
	}
	// What the caller sent is shown as stored: invalid UTF-8 repaired.
	e, _ := l.Get(t.Context(), 2)
	if e.Path != "/v1/\ufffd\ufffd/\ufffd(/\ufffd\ufffd" {
		t.Fatalf("path shown as %q", e.Path)
	}
}

// The document's examples are the vectors: each line of the first vector
// (entry, stored bytes, leaf) appears verbatim in docs/audit-format.md.
func TestFormatDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/audit-format.md")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan() && i < 2; i++ {
		var v vector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{string(v.Entry), v.Stored, v.Leaf} {
			if !bytes.Contains(doc, []byte(want)) {
				t.Errorf("docs/audit-format.md lacks vector %d's %.80s…", i+1, want)
			}
		}
	}
}

// An independent implementation, written from docs/audit-format.md in
// Python (testdata/audit-format/verify_leaves.py), recomputes every leaf
// and the chain from the entries as shown, and rejects an altered one.
func TestFormatIndependentVerifier(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed: the outsider's verifier is a Python script")
	}
	script := "../../testdata/audit-format/verify_leaves.py"
	out, err := exec.Command(py, script, vectorsPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "6 leaves recomputed") {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	b, _ := os.ReadFile(vectorsPath)
	if err := os.WriteFile(bad, bytes.Replace(b, []byte(`"status":404`), []byte(`"status":200`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(py, script, bad).CombinedOutput(); err == nil {
		t.Fatalf("the verifier accepted an altered entry:\n%s", out)
	}
}
