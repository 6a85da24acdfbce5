package app_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	tlog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/witness/witnesstest"
)

// aWitness is a transparency-log witness run by the test process.
type aWitness struct{ *witnesstest.Witness }

func newWitness(t *testing.T, name string) *aWitness { return &aWitness{witnesstest.New(t, name)} }

// cosign is what a witness does with a checkpoint note: check the log's
// signature with a standard verifier (x/mod note.Open, formats
// log.ParseCheckpoint) and add its cosignature/v1.
func (w *aWitness) cosign(t *testing.T, text []byte, origin string, logV note.Verifier) []byte {
	t.Helper()
	_, _, n, err := tlog.ParseCheckpoint(text, origin, logV)
	if err != nil {
		t.Fatalf("witness %s: the gateway's note does not verify: %v\n%s", w.Name, err, text)
	}
	out, err := note.Sign(n, w.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cosignBody cosigns a checkpoint body of the witness's choosing.
func (w *aWitness) cosignBody(t *testing.T, body string) []byte {
	return witnesstest.CosignBody(t, body, w.Signer)
}

type witnessInfo struct {
	Origin    string `json:"origin"`
	LogKey    string `json:"log_key"`
	Witnesses []struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	} `json:"witnesses"`
}

func (g *gateway) noteText(path string) []byte {
	g.t.Helper()
	r := g.do(http.MethodGet, path, g.token("exley-yos", "social_worker"), nil)
	if r.Status != http.StatusOK {
		g.t.Fatalf("GET %s: %d %s", path, r.Status, r.Raw)
	}
	return r.Raw
}

func (g *gateway) postCosignature(body []byte) response {
	g.t.Helper()
	return g.doWith(http.MethodPost, "/v1/audit/checkpoints/cosignatures", g.token("exley-police", "police_officer"), body, "text/plain; charset=utf-8")
}

// verifyNote checks a note with the standard tools (formats'
// log.ParseCheckpoint over x/mod's note.Open) and the outsider's python
// verifier; it returns the checkpoint and the names that signed.
func verifyNote(t *testing.T, text []byte, info witnessInfo, ws ...*aWitness) (*tlog.Checkpoint, []string) {
	t.Helper()
	logV, err := note.NewVerifier(info.LogKey)
	if err != nil {
		t.Fatal(err)
	}
	var others []note.Verifier
	vkeys := []string{info.LogKey}
	for _, w := range ws {
		others = append(others, w.Verifier)
		vkeys = append(vkeys, w.VKey)
	}
	cp, _, n, err := tlog.ParseCheckpoint(text, info.Origin, logV, others...)
	if err != nil {
		t.Fatalf("the standard note verifier refuses the gateway's note: %v\n%s", err, text)
	}
	var names []string
	for _, s := range n.Sigs {
		names = append(names, s.Name)
	}
	f := filepath.Join(t.TempDir(), "checkpoint.note")
	if err := os.WriteFile(f, text, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("python3", append([]string{filepath.Join("..", "..", "testdata", "audit-format", "verify_note.py"), f}, vkeys...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("the outsider's note verifier refuses the note: %v\n%s", err, out)
	}
	if want := info.Origin + " " + itoa(cp.Size) + " " + hex.EncodeToString(cp.Hash) + "\n"; string(out) != want {
		t.Fatalf("the outsider's note verifier read %q, the standard one %q", out, want)
	}
	return cp, names
}

// witnessGateway configures the witnesses w on a gateway and makes a few
// decisions.
func witnessConfig(ws ...*aWitness) func(*config.Config) {
	return func(c *config.Config) {
		c.Audit.CheckpointEvery = 1_000_000 // only on demand and at shutdown
		for _, w := range ws {
			c.Audit.Witnesses = append(c.Audit.Witnesses, w.VKey)
		}
	}
}

func TestWitnessCosignsCheckpointNotes(t *testing.T) {
	w1, stranger := newWitness(t, "witness.example.org/w1"), newWitness(t, "stranger.example/w")
	g := startGateway(t, witnessConfig(w1))
	n := checkWitnessFlow(t, g, w1, stranger)

	// After a restart the note, its signature and the cosignature are the
	// same.
	before := g.noteText("/v1/audit/checkpoints/note?size=" + itoa(n))
	g.restart()
	if after := g.noteText("/v1/audit/checkpoints/note?size=" + itoa(n)); !bytes.Equal(after, before) {
		t.Fatalf("the note of size %d changed across a restart:\n%s\nthen\n%s", n, before, after)
	}
	var info witnessInfo
	decodeInto(t, g.get("exley-yos", "social_worker", "/v1/audit/witnesses").Raw, &info)
	if _, names := verifyNote(t, before, info, w1); strings.Join(names, ",") != info.Origin+","+w1.Name {
		t.Fatalf("after a restart the note is signed by %v", names)
	}

	// The outsider's minimal witness (python3 and openssl, from the docs)
	// co-signs as the demo witness; the standard verifier accepts its
	// cosignature beside w1's.
	dw, err := fnote.NewVerifierForCosignatureV1(info.Witnesses[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	demoWitness := &aWitness{&witnesstest.Witness{Name: demo.WitnessName, VKey: info.Witnesses[0].Key, Verifier: dw}}
	f := filepath.Join(t.TempDir(), "checkpoint.note")
	if err := os.WriteFile(f, before, 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join("..", "..", "testdata", "audit-format", "cosign_note.py")
	cosigned, err := exec.Command("python3", script, filepath.Join(demoDir, "keys", demo.WitnessKeyFile), f, info.LogKey).Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	if r := g.postCosignature(cosigned); r.Status != http.StatusOK || !strings.Contains(string(r.Raw), `"`+demo.WitnessName+`"]`) {
		t.Fatalf("the python witness's cosignature: %d %s", r.Status, r.Raw)
	}
	witnessed := g.noteText("/v1/audit/checkpoints/note?size=" + itoa(n))
	if _, names := verifyNote(t, witnessed, info, w1, demoWitness); strings.Join(names, ",") != info.Origin+","+w1.Name+","+demo.WitnessName { // by name
		t.Fatalf("the note co-signed by both witnesses is signed by %v:\n%s", names, witnessed)
	}
}

// checkWitnessFlow runs a witness's work against a gateway configured
// with w1 (and not stranger): fetch, co-sign, submit, read back; and
// every refusal.
func checkWitnessFlow(t *testing.T, g *gateway, w1, stranger *aWitness) (n uint64) {
	t.Helper()
	for range 3 {
		decisionOf(t, g.decide("exley-csc", "social_worker", policeShare()))
	}
	var info witnessInfo
	decodeInto(t, g.get("exley-yos", "social_worker", "/v1/audit/witnesses").Raw, &info)
	// The demo's own witness, then w1.
	if info.Origin != "trustgate/audit" || len(info.Witnesses) != 2 || info.Witnesses[0].Name != demo.WitnessName ||
		info.Witnesses[1].Name != w1.Name || info.Witnesses[1].Key != w1.VKey {
		t.Fatalf("witnesses: %+v", info)
	}
	logV, err := note.NewVerifier(info.LogKey)
	if err != nil {
		t.Fatalf("log key %q: %v", info.LogKey, err)
	}

	// The note is the ES256 checkpoint's tree: same size, same root.
	text := g.noteText("/v1/audit/checkpoints/note")
	var latest struct {
		Checkpoint checkpointView `json:"checkpoint"`
	}
	decodeInto(t, g.get("exley-yos", "social_worker", "/v1/audit/checkpoints/latest").Raw, &latest)
	jws, err := audit.ParseCheckpoint([]byte(latest.Checkpoint.JWS), g.jwks())
	if err != nil {
		t.Fatal(err)
	}
	cp, names := verifyNote(t, text, info)
	n = jws.Size
	if cp.Size != n || hex.EncodeToString(cp.Hash) != jws.Root || n < 3 {
		t.Fatalf("note %d %x, ES256 checkpoint %d %s", cp.Size, cp.Hash, jws.Size, jws.Root)
	}
	if strings.Join(names, ",") != info.Origin {
		t.Fatalf("a fresh note is signed by %v", names)
	}

	// The witness co-signs over real HTTP; the note then carries both.
	cosigned := w1.cosign(t, text, info.Origin, logV)
	r := g.postCosignature(cosigned)
	if r.Status != http.StatusOK || r.Body["size"] != float64(n) || !strings.Contains(string(r.Raw), `"cosigned_by":["`+w1.Name+`"]`) {
		t.Fatalf("cosignature: %d %s", r.Status, r.Raw)
	}
	again := g.noteText("/v1/audit/checkpoints/note?size=" + itoa(n))
	if _, names := verifyNote(t, again, info, w1); strings.Join(names, ",") != info.Origin+","+w1.Name {
		t.Fatalf("the note after co-signing is signed by %v:\n%s", names, again)
	}

	// Refusals: each a 4xx naming the reason, audited, nothing stored.
	bad := bytes.Clone(cosigned)
	i := bytes.LastIndex(bad, []byte(w1.Name+" ")) + len(w1.Name) + 1 + 20
	if bad[i] == 'A' { // a letter inside the base64, changed for another
		bad[i] = 'B'
	} else {
		bad[i] = 'A'
	}
	otherRoot := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for _, c := range []struct {
		name   string
		body   []byte
		status int
		code   string
		reason string
	}{
		{"bad cosignature", bad, 422, "bad_cosignature", `witness \"` + w1.Name + `\"`},
		{"wrong root", w1.cosignBody(t, info.Origin+"\n"+itoa(n)+"\n"+otherRoot+"\n"), 422, "wrong_tree", "is not this log's root at size " + itoa(n)},
		{"unsigned size", w1.cosignBody(t, info.Origin+"\n"+itoa(n-1)+"\n"+otherRoot+"\n"), 422, "wrong_tree", "signed no checkpoint of size " + itoa(n-1)},
		{"other origin", w1.cosignBody(t, "elsewhere/log\n"+itoa(n)+"\n"+otherRoot+"\n"), 422, "wrong_tree", `origin \"elsewhere/log\"`},
		{"unknown witness", stranger.cosign(t, text, info.Origin, logV), 403, "unknown_witness", stranger.Name},
		{"not a note", []byte("hello\n"), 400, "invalid_request", "no blank line"},
	} {
		r := g.postCosignature(c.body)
		if r.Status != c.status || !strings.Contains(string(r.Raw), `"code":"`+c.code+`"`) || !strings.Contains(string(r.Raw), c.reason) {
			t.Fatalf("%s: %d %s, want %d %s naming %q", c.name, r.Status, r.Raw, c.status, c.code, c.reason)
		}
		seq := uint64(0)
		for _, e := range g.entries(func(e *audit.Entry) bool { return e.Path == "/v1/audit/checkpoints/cosignatures" }) {
			seq = max(seq, e.Seq)
			if e.Seq == seq && (e.Status != c.status || e.Kind != audit.KindRejected || e.Requester != "exley-police") {
				t.Fatalf("%s: audited as %+v", c.name, e)
			}
		}
		if seq == 0 {
			t.Fatalf("%s: not audited", c.name)
		}
	}
	if r := g.doWith(http.MethodPost, "/v1/audit/checkpoints/cosignatures", g.token("exley-police", "police_officer"), cosigned, "application/json"); r.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("cosignature as JSON: %d %s", r.Status, r.Raw)
	}
	if after := g.noteText("/v1/audit/checkpoints/note?size=" + itoa(n)); !bytes.Equal(after, again) {
		t.Fatalf("a refused cosignature changed the note:\n%s", after)
	}
	if r := g.do(http.MethodGet, "/v1/audit/checkpoints/note?size="+itoa(n-1), g.token("exley-yos", "social_worker"), nil); r.Status != http.StatusNotFound {
		t.Fatalf("note of an unsigned size: %d %s", r.Status, r.Raw)
	}
	if r := g.do(http.MethodGet, "/v1/audit/checkpoints/note", "", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("note without a token: %d %s", r.Status, r.Raw)
	}

	// A later checkpoint: the consistency answer's sizes and roots are
	// those of the two notes.
	r = g.decide("exley-csc", "social_worker", policeShare())
	decisionOf(t, r)
	var inc struct {
		Checkpoint checkpointView `json:"checkpoint"`
	}
	decodeInto(t, g.get("exley-police", "auditor", "/v1/audit/proofs/inclusion?seq="+itoa(uint64(r.Body["audit_seq"].(float64)))).Raw, &inc)
	var cons struct {
		Proof audit.ConsistencyProof `json:"proof"`
	}
	decodeInto(t, g.get("exley-police", "police_officer", "/v1/audit/proofs/consistency?from="+itoa(n)+"&to="+itoa(inc.Checkpoint.Size)).Raw, &cons)
	from, _ := verifyNote(t, g.noteText("/v1/audit/checkpoints/note?size="+itoa(n)), info, w1)
	to, _ := verifyNote(t, g.noteText("/v1/audit/checkpoints/note?size="+itoa(inc.Checkpoint.Size)), info)
	if hex.EncodeToString(from.Hash) != cons.Proof.FromRoot || hex.EncodeToString(to.Hash) != cons.Proof.ToRoot || to.Size != inc.Checkpoint.Size {
		t.Fatalf("consistency %+v, notes %d %x and %d %x", cons.Proof, from.Size, from.Hash, to.Size, to.Hash)
	}
	if err := audit.VerifyConsistency(&cons.Proof, hex.EncodeToString(from.Hash), hex.EncodeToString(to.Hash)); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWitnessCosignsVaultSignedNotes(t *testing.T) {
	w1, stranger := newWitness(t, "witness.example.org/w1"), newWitness(t, "stranger.example/w")
	g, _ := vaultGateway(t, witnessConfig(w1))
	n := checkWitnessFlow(t, g, w1, stranger)
	before := g.noteText("/v1/audit/checkpoints/note?size=" + itoa(n))
	g.restart()
	if after := g.noteText("/v1/audit/checkpoints/note?size=" + itoa(n)); !bytes.Equal(after, before) {
		t.Fatalf("the Vault-signed note of size %d changed across a restart:\n%s\nthen\n%s", n, before, after)
	}
}
