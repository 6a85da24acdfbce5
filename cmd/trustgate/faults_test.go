package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/keys"
)

// TestFaultBattery is the issue-15 fault battery, independent of the
// audit package's own (internal/audit/damage_test.go): its own log, its
// own kinds of damage, and the built trustgate binary run as an operator
// runs it. For every damaged copy of a small log (4 KiB pages, so that
// every bucket has branch pages):
//
//   - `trustgate audit verify` and `trustgate audit export` never crash:
//     no signal, exit 0 or 1 (README "Exit codes");
//   - when verify passes, export exits 0 with exactly the undamaged log's
//     output, and the queries, the access reports and reads by seq give
//     the undamaged log's answers (no file that verify passes is one a
//     reader fails on);
//   - on a sample of the files verify refuses, `trustgate serve` refuses
//     to start with exit 1 and verify's message.
//
// And a forged, re-signed rewrite is located from the external
// checkpoints (forgedRewriteLocated).
//
// The damage: truncation at every page boundary and inside pages, a
// zeroed page for every page, random flips of 1 to 4 bytes anywhere,
// flips in branch pages, in page headers and in leaf element headers,
// and two pages swapped. TRUSTGATE_FAULTS sets the number of randomly
// damaged copies (default 240 in make test; make fuzz runs 3000).
func TestFaultBattery(t *testing.T) {
	random := 240
	if v := os.Getenv("TRUSTGATE_FAULTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("TRUSTGATE_FAULTS=%q: %v", v, err)
		}
		random = n
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	t.Run("damaged copies", func(t *testing.T) { damagedCopies(t, bin, random) })
	t.Run("forged rewrite located", func(t *testing.T) { forgedRewriteLocated(t, bin) })
}

func damagedCopies(t *testing.T, bin string, random int) {
	dir := t.TempDir()
	fix := faultFixture(t, dir)
	cases := faultCases(fix, random)

	var (
		mu                        sync.Mutex
		refused                   []string // damaged files verify refused, for the serve sample
		passed, failed, processed atomic.Int64
	)
	work := make(chan faultCase)
	var wg sync.WaitGroup
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for c := range work {
				p := filepath.Join(dir, fmt.Sprintf("damaged-%d.db", processed.Add(1)))
				if err := os.WriteFile(p, c.file, 0o600); err != nil {
					t.Error(err)
					continue
				}
				code, out := runBinary(t, bin, "audit", "verify", "--db", p, "--jwks", fix.jwks)
				if code != exitOK && code != exitFailure {
					t.Errorf("%s: audit verify exit %d (want 0 or 1):\n%s", c.what, code, out)
				}
				ecode, eout := runBinary(t, bin, "audit", "export", "--db", p, "--format", "jsonl")
				if ecode != exitOK && ecode != exitFailure {
					t.Errorf("%s: audit export exit %d (want 0 or 1):\n%s", c.what, ecode, eout)
				}
				if code == exitOK {
					passed.Add(1)
					if ecode != exitOK || eout != fix.export {
						t.Errorf("%s: verify passed but export %s (exit %d):\n%.400s", c.what, map[bool]string{true: "fails", false: "differs"}[ecode != exitOK], ecode, eout)
					}
					if got, err := readAll(t, p); err != nil || got != fix.answers {
						t.Errorf("%s: verify passed but the readers fail or differ: %v", c.what, err)
					}
				} else {
					failed.Add(1)
					if strings.Contains(out, "audit log damaged") {
						mu.Lock()
						refused = append(refused, c.what)
						mu.Unlock()
					}
				}
				os.Remove(p)
			}
		})
	}
	for _, c := range cases {
		work <- c
	}
	close(work)
	wg.Wait()
	t.Logf("%d damaged copies: verify refused %d (exit 1), passed %d (export and every reader as the undamaged log); no crash", len(cases), failed.Load(), passed.Load())

	// The gateway's start on a sample of the refused files.
	byWhat := map[string][]byte{}
	for _, c := range cases {
		byWhat[c.what] = c.file
	}
	cfg := filepath.Join(fix.demo, "trustgate.yaml")
	db := filepath.Join(fix.demo, "data", "audit.db")
	served := 0
	defer func() { t.Logf("serve refused %d sampled damaged logs with exit 1 and verify's message", served) }()
	for i := 0; i < len(refused); i += max(1, len(refused)/12) {
		what := refused[i]
		if err := os.WriteFile(db, byWhat[what], 0o600); err != nil {
			t.Fatal(err)
		}
		_, vout := runBinary(t, bin, "audit", "verify", "--db", db)
		code, out := runBinary(t, bin, "serve", "--config", cfg, "--listen", "127.0.0.1:0")
		msg := vout[strings.Index(vout, "audit log damaged"):]
		if code != exitFailure || !strings.Contains(out, strings.TrimSpace(msg)) {
			t.Errorf("%s: serve exit %d, want 1 with verify's message %q:\n%s", what, code, msg, out)
		}
		served++
	}
}

type faultCase struct {
	what string
	file []byte
}

type faultFix struct {
	file    []byte // the undamaged log, trimmed to its high-water mark
	pages   int
	jwks    string // the gateway's public keys (file)
	export  string // `audit export` of the undamaged log
	answers string // readAll of the undamaged log
	demo    string // a demo Trust whose data/audit.db the serve sample replaces
}

const faultPage = 4096

// buildBinary builds bin/trustgate the way `make build` does, into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "trustgate")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// localKeys opens a local key store under dir (the demo's backend, the
// checkpoint key beside the log) and writes its public keys as a JWK set
// file for --jwks.
func localKeys(t *testing.T, dir string) (*keys.Local, string) {
	t.Helper()
	k, err := keys.OpenLocal(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := k.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, jb, 0o600); err != nil {
		t.Fatal(err)
	}
	return k, jwks
}

// runBinary runs the built binary; a signal is exit -1 with its name.
func runBinary(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -1, fmt.Sprintf("killed by signal %v\n%s", ws.Signal(), out.String())
		}
		return ee.ExitCode(), out.String()
	default:
		t.Fatalf("run %s: %v", bin, err)
		return 0, ""
	}
}

// faultFixture writes a log of 360 varied entries with a signed
// checkpoint every 40, as a gateway would, and records the undamaged
// answers.
func faultFixture(t *testing.T, dir string) *faultFix {
	t.Helper()
	fix := &faultFix{demo: filepath.Join(dir, "demo")}
	if code, out := runCLI(t, "demo", "init", "--dir", fix.demo, "--listen", "127.0.0.1:0"); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	if err := os.MkdirAll(filepath.Join(fix.demo, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pristine.db")
	l, err := audit.Open(path, audit.Options{PageSize: faultPage})
	if err != nil {
		t.Fatal(err)
	}
	k, jwks := localKeys(t, dir)
	fix.jwks = jwks
	cp, err := audit.NewCheckpointer(t.Context(), l, k, audit.CheckpointOptions{LogID: "trustgate"})
	if err != nil {
		t.Fatal(err)
	}
	partners := []string{"exley-csc", "exley-police", "riverside-gp", "exley-academy"}
	kinds := []audit.Kind{audit.KindDecision, audit.KindDecision, audit.KindRejected, audit.KindAccess, audit.KindConsent, audit.KindDisclosure}
	base := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for i := range 360 {
		e := audit.Entry{
			Time: base.Add(time.Duration(i) * time.Minute), RequestID: fmt.Sprintf("req-%04d", i),
			Kind: kinds[i%len(kinds)], Method: "POST", Path: "/v1/decisions", Status: 200,
			Requester: partners[i%4], Practitioner: fmt.Sprintf("prac-%d", i%7), Role: "social_worker",
			Provider: partners[(i+1)%4], Purpose: []string{"safeguarding", "early_help"}[i%2],
			Subject: fmt.Sprintf("%064x", uint64(i%11+1)*0x9e3779b97f4a7c15), TokenID: fmt.Sprintf("jti-%d", i),
		}
		if e.Kind == audit.KindDecision {
			e.Decision = []string{"allow", "deny"}[i%2]
			e.Categories = []string{"household", "police_concerns"}
			e.Reasons = []string{"synthetic reason " + strconv.Itoa(i)}
		}
		if _, _, err := l.Append(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
		if (i+1)%40 == 0 {
			if _, err := cp.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	meta := func(i int) (txid, hw uint64) {
		m := b[i*faultPage+16:]
		return binary.LittleEndian.Uint64(m[48:]), binary.LittleEndian.Uint64(m[40:])
	}
	tx0, hw := meta(0)
	if tx1, hw1 := meta(1); tx1 > tx0 {
		hw = hw1
	}
	fix.file, fix.pages = b[:hw*faultPage], int(hw)
	if err := os.WriteFile(path, fix.file, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := runCLI(t, "audit", "export", "--db", path, "--format", "jsonl")
	if code != 0 {
		t.Fatalf("export of the undamaged log: %d %s", code, out)
	}
	fix.export = out
	if fix.answers, err = readAll(t, path); err != nil {
		t.Fatalf("readers on the undamaged log: %v", err)
	}
	return fix
}

// readAll digests what the gateway's readers answer from the log: every
// entry by seq, a scan, the queries by each indexed field and by child
// and practitioner (every page), and the access report of every child
// with its proofs.
func readAll(t *testing.T, path string) (string, error) {
	ctx := t.Context()
	l, err := audit.Open(path, audit.Options{ReadOnly: true})
	if err != nil {
		return "", err
	}
	defer l.Close()
	h := sha256.New()
	enc := json.NewEncoder(h)
	size, _ := l.Head()
	children := map[string]bool{}
	for seq := uint64(1); seq <= size; seq++ {
		e, err := l.Get(ctx, seq)
		if err != nil {
			return "", fmt.Errorf("get %d: %w", seq, err)
		}
		if e.Subject != "" {
			children[e.Subject] = true
		}
		enc.Encode(e)
	}
	n := uint64(0)
	if err := l.Scan(ctx, 1, func(e *audit.Entry) error { n++; return enc.Encode(e) }); err != nil || n != size {
		return "", fmt.Errorf("scan: %d of %d entries: %v", n, size, err)
	}
	var filters []audit.Filter
	for _, p := range []string{"exley-csc", "exley-police", "riverside-gp", "exley-academy"} {
		filters = append(filters, audit.Filter{Requester: p}, audit.Filter{Provider: p})
	}
	for i := range 7 {
		filters = append(filters, audit.Filter{Practitioner: fmt.Sprintf("prac-%d", i)})
	}
	for _, k := range []string{"decision", "rejected", "access", "consent", "disclosure", "allow", "deny"} {
		filters = append(filters, audit.Filter{Kind: k})
	}
	kids := slices.Sorted(maps.Keys(children))
	for _, c := range kids {
		filters = append(filters, audit.Filter{Subject: c})
	}
	for _, f := range filters {
		q := audit.Query{Filter: f, Limit: 100}
		for pages := 0; ; pages++ {
			if uint64(pages) > size {
				return "", fmt.Errorf("query %+v: more pages than entries", f)
			}
			page, err := l.Query(ctx, q)
			if err != nil {
				return "", fmt.Errorf("query %+v: %w", f, err)
			}
			enc.Encode(page)
			if page.Next == 0 {
				break
			}
			q.Before = page.Next
		}
	}
	cp, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return "", fmt.Errorf("latest checkpoint: %w", err)
	}
	for _, c := range kids {
		rep, err := l.AccessReport(ctx, c, cp, false)
		if err != nil {
			return "", fmt.Errorf("access report: %w", err)
		}
		enc.Encode(rep)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// faultCases damages fix.file in every way the battery knows.
func faultCases(fix *faultFix, random int) []faultCase {
	var cs []faultCase
	add := func(what string, b []byte) { cs = append(cs, faultCase{what, b}) }
	flip := func(b []byte, at int, mask byte) []byte {
		c := bytes.Clone(b)
		c[at] ^= mask
		return c
	}
	for k := 0; k < fix.pages; k++ {
		add(fmt.Sprintf("truncated to %d pages", k), fix.file[:k*faultPage])
		add(fmt.Sprintf("truncated inside page %d", k), fix.file[:k*faultPage+1+k*37%(faultPage-1)])
		z := bytes.Clone(fix.file)
		clear(z[k*faultPage : (k+1)*faultPage])
		add(fmt.Sprintf("page %d zeroed", k), z)
	}
	le := binary.LittleEndian
	var branch, leaves []int
	for k := 2; k < fix.pages; k++ {
		switch le.Uint16(fix.file[k*faultPage+8:]) {
		case 0x01:
			branch = append(branch, k)
		case 0x02:
			leaves = append(leaves, k)
		}
	}
	r := rand.New(rand.NewPCG(15, 2026))
	for i := range random {
		switch i % 5 {
		case 0: // 1 to 4 random bytes anywhere
			b := bytes.Clone(fix.file)
			for range 1 + r.IntN(4) {
				b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
			}
			add(fmt.Sprintf("random flips #%d", i), b)
		case 1: // a branch page's header, elements or keys
			id := branch[r.IntN(len(branch))]
			count := int(le.Uint16(fix.file[id*faultPage+10:]))
			at := id*faultPage + r.IntN(16+count*24)
			add(fmt.Sprintf("branch page %d byte %d", id, at-id*faultPage), flip(fix.file, at, byte(1<<r.IntN(8))))
		case 2: // a page header: id, flags, count, overflow
			id := 2 + r.IntN(fix.pages-2)
			at := id*faultPage + r.IntN(16)
			add(fmt.Sprintf("page %d header byte %d", id, at-id*faultPage), flip(fix.file, at, byte(1+r.IntN(255))))
		case 3: // a leaf element header
			id := leaves[r.IntN(len(leaves))]
			count := int(le.Uint16(fix.file[id*faultPage+10:]))
			if count == 0 {
				count = 1
			}
			at := id*faultPage + 16 + r.IntN(count*16)
			add(fmt.Sprintf("leaf page %d element byte %d", id, at-id*faultPage), flip(fix.file, at, byte(1+r.IntN(255))))
		case 4: // two pages swapped
			a, b := 2+r.IntN(fix.pages-2), 2+r.IntN(fix.pages-2)
			c := bytes.Clone(fix.file)
			copy(c[a*faultPage:(a+1)*faultPage], fix.file[b*faultPage:(b+1)*faultPage])
			copy(c[b*faultPage:(b+1)*faultPage], fix.file[a*faultPage:(a+1)*faultPage])
			add(fmt.Sprintf("pages %d and %d swapped", a, b), c)
		}
	}
	return cs
}

// forgedRewriteLocated: the forgery, run with the built binary.
// With the local key store the checkpoint key sits beside the log, so
// whoever has the disk can rewrite the log from entry 201 and re-sign
// every stored checkpoint after it. Given the witnesses' copies of the
// checkpoints at 200 and 300, `audit verify` names entries 201 to 300,
// from the last external checkpoint that still matches, not the forged
// stored ones.
func forgedRewriteLocated(t *testing.T, bin string) {
	dir := t.TempDir()
	k, jwks := localKeys(t, dir)
	var witnesses []string
	write := func(path string, forge bool) {
		l, err := audit.Open(path, audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		cp, err := audit.NewCheckpointer(t.Context(), l, k, audit.CheckpointOptions{LogID: "trustgate"})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 300; i++ {
			e := audit.Entry{Time: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
				RequestID: fmt.Sprintf("req-%d", i), Kind: audit.KindDecision, Method: "POST", Path: "/v1/decisions", Status: 200,
				Requester: "exley-police", Practitioner: "prac-1", Provider: "exley-csc", Purpose: "safeguarding", Decision: "deny",
				Subject: fmt.Sprintf("%064x", uint64(i%5+1)*0x9e3779b97f4a7c15)}
			if forge && i == 201 {
				e.Decision = "allow" // the forger's edit
			}
			if _, _, err := l.Append(t.Context(), &e); err != nil {
				t.Fatal(err)
			}
			if i%50 == 0 {
				c, err := cp.Checkpoint(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if !forge && (i == 200 || i == 300) {
					w := filepath.Join(dir, fmt.Sprintf("witness-%d.jws", i))
					if err := os.WriteFile(w, []byte(c.JWS), 0o600); err != nil {
						t.Fatal(err)
					}
					witnesses = append(witnesses, w)
				}
			}
		}
	}
	write(filepath.Join(dir, "genuine.db"), false)
	forged := filepath.Join(dir, "forged.db")
	write(forged, true)
	if code, out := runBinary(t, bin, "audit", "verify", "--db", forged, "--jwks", jwks); code != exitOK {
		t.Fatalf("without the witnesses a re-signed rewrite cannot be told (docs/auditing.md); verify: exit %d\n%s", code, out)
	}
	code, out := runBinary(t, bin, "audit", "verify", "--db", forged, "--jwks", jwks, "--checkpoint", witnesses[0], "--checkpoint", witnesses[1])
	if code != exitFailure || !strings.Contains(out, "audit log tampered: entries 201 to 300") || !strings.Contains(out, "external checkpoint at 200 still matches") {
		t.Fatalf("verify with the witnesses at 200 and 300: exit %d, want 1 naming entries 201 to 300 from the checkpoint at 200:\n%s", code, out)
	}
	t.Logf("%s", strings.TrimSpace(out))
}
