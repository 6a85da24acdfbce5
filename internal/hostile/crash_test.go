package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKilledGatewayKeepsEveryAnsweredEntry: the demo gateway, under load
// from eight clients, is killed with SIGKILL — its newest audit entries
// are then only in the journal (docs/audit-journal.md). Started again, it
// replays them; stopped cleanly, its log verifies offline, and every
// request it answered is recorded under the audit_seq its answer gave,
// with the request id its answer carried.
func TestKilledGatewayKeepsEveryAnsweredEntry(t *testing.T) {
	g := prepareDemo(t)
	tr := readTrust(t, g.dir)
	keys, err := LoadKeys(g.dir, tr.partnerIDs())
	if err != nil {
		t.Fatal(err)
	}
	g.start(t, false)
	c := NewClient(g.base)
	body := mustJSON(map[string]any{"subject": childA, "provider": "exley-police", "purpose": "safeguarding",
		"categories": []string{"police_concerns"}})

	type answered struct {
		seq uint64
		id  string
	}
	var (
		mu   sync.Mutex
		got  []answered
		bad  []string
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := c.Do("POST", "/v1/decisions", keys.Token("exley-csc", "sw-0042", "social_worker"), body, nil)
				if a.Err != nil {
					continue // the gateway was killed under it
				}
				var m struct {
					RequestID string `json:"request_id"`
					AuditSeq  uint64 `json:"audit_seq"`
				}
				mu.Lock()
				if err := json.Unmarshal(a.Body, &m); a.Status != 200 || err != nil || m.AuditSeq == 0 || m.RequestID != a.RequestID {
					bad = append(bad, tail(string(a.Body), 200))
				} else {
					got = append(got, answered{m.AuditSeq, m.RequestID})
				}
				mu.Unlock()
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 400 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d answers in 60 s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := g.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-g.done
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d answers were not a decision with its audit_seq, e.g. %s", len(bad), bad[0])
	}

	g.start(t, false)
	if out := g.out.String(); !strings.Contains(out, "audit journal replayed") {
		t.Errorf("the restart did not replay the journal (the kill found every entry applied; the test needs some only in the journal):\n%s", tail(out, 2000))
	}
	g.stop(t)
	if out, err := exec.Command(g.bin, "audit", "verify", "--db", g.auditFile()).CombinedOutput(); err != nil {
		t.Fatalf("audit verify after the kill and restart: %v\n%s", err, out)
	}
	recorded := map[uint64]string{}
	sc := bufio.NewScanner(bytes.NewReader(g.export(t)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			Seq       uint64 `json:"seq"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		recorded[e.Seq] = e.RequestID
	}
	lost := 0
	for _, a := range got {
		if recorded[a.seq] != a.id {
			lost++
			if lost <= 3 {
				t.Errorf("answered request %s (audit_seq %d) is recorded as %q", a.id, a.seq, recorded[a.seq])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d answered requests are not in the log as answered", lost, len(got))
	}
	t.Logf("%d answered requests before the kill, all recorded; %d entries after the restart", len(got), len(recorded))
}
