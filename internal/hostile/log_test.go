package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// notScanned are the members of an audit entry (docs/audit-format.md) that
// the NHS number scan leaves out, because no caller input lands in them:
// the time, the gateway's hex digests and ids, the chain, and the recorded
// policy input (a JSON text of partner types, consent ids and decimal
// Unix times that the gateway builds). Every other string, and every
// string of every list, is scanned: method, path, error, reasons,
// requester, practitioner, role, token_id (the caller's jti), provider,
// purpose, categories, override_ground, lead_partner, lead_practitioner,
// review ids, consent ids, index fields and the rest.
var notScanned = map[string]bool{
	"time": true, "subject": true, "request_id": true, "policy_revision": true, "disclosed_sha256": true,
	"prev_hash": true, "hash": true, "origin_root": true, "origin_hash": true, "origin_checkpoint": true,
	"input_residual": true,
}

// privilegedPaths: the endpoints that see across children or change the
// Trust's rules (docs/api.md), with the role and scope a 2xx needs.
var privilegedPaths = []struct {
	prefix, role string
	trust        bool
}{
	{"/v1/audit/entries", "auditor", true},
	{"/v1/audit/snapshot", "auditor", true},
	{"/v1/admin/reload", "ig_lead", true},
	{"/v1/admin/status", "ig_lead", true},
	{"/v1/admin/whatif", "ig_lead", true},
	{"/v1/admin/index/retention", "ig_lead", false},
	{"/v1/reviews", "ig_lead", false},
	{"/v1/audit/stats", "", false},
	{"/v1/audit/proofs/inclusion", "", false},
}

// logFigures are what the log check found.
type logFigures struct {
	entries, v1Answers, unaudited, scannedStrings, nhsInFields, injectedInFile, injected  int
	privileged2xx, privilegedBreach, reviewsClosed, selfReviews, leadChanges, leadHijacks int
}

func (f logFigures) String() string {
	return fmt.Sprintf("%d entries; %d /v1 answers, %d of them not in the log; %d strings scanned, %d NHS numbers in them; "+
		"%d injected numbers, %d found in the file's bytes; %d privileged 2xx entries, %d by people not appointed for them; "+
		"%d reviews closed, %d by the override's maker; %d lead professional changes of children A and B, %d not made by the legitimate set-up",
		f.entries, f.v1Answers, f.unaudited, f.scannedStrings, f.nhsInFields, f.injected, f.injectedInFile,
		f.privileged2xx, f.privilegedBreach, f.reviewsClosed, f.selfReviews, f.leadChanges, f.leadHijacks)
}

// checkLog reads the exported log and the raw file independently of the
// gateway and asserts the five zeros.
func checkLog(t *testing.T, export, raw []byte, c *Client, as []appointment, overrides []ovr, legit map[string]bool, injected map[string]bool) logFigures {
	t.Helper()
	var f logFigures
	var entries []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(export))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line: %v", err)
		}
		entries = append(entries, e)
	}
	f.entries = len(entries)
	str := func(e map[string]any, k string) string { s, _ := e[k].(string); return s }
	num := func(e map[string]any, k string) int { n, _ := e[k].(float64); return int(n) }

	// 0 unaudited /v1 answers.
	ids := map[string]bool{}
	for _, e := range entries {
		ids[str(e, "request_id")] = true
	}
	n, seen, without := c.Seen()
	f.v1Answers = n
	for _, id := range seen {
		if !ids[id] {
			f.unaudited++
			if f.unaudited <= 5 {
				t.Errorf("answer %s is not in the log", id)
			}
		}
	}
	f.unaudited += len(without)
	for i, w := range without {
		if i < 5 {
			t.Errorf("a /v1 answer without X-Request-Id: %s", w)
		}
	}

	// 0 NHS numbers in the fields where caller input lands.
	var found []string
	for _, e := range entries {
		for k, v := range e {
			if notScanned[k] {
				continue
			}
			var ss []string
			switch x := v.(type) {
			case string:
				ss = []string{x}
			case []any:
				for _, y := range x {
					if s, ok := y.(string); ok {
						ss = append(ss, s)
					}
				}
			}
			for _, s := range ss {
				f.scannedStrings++
				for _, nhs := range ScanNHS(s) {
					found = append(found, fmt.Sprintf("seq %v %s: %q (%s)", e["seq"], k, tail(s, 120), nhs))
				}
			}
		}
	}
	f.nhsInFields = len(found)
	for i, s := range found {
		if i < 10 {
			t.Errorf("an NHS number in the log: %s", s)
		}
	}
	// 0 of the injected numbers (and of the demo children's) in the file's
	// bytes, in any of the forms they were sent in.
	all := map[string]bool{childA: true, childB: true, childC: true}
	for k := range injected {
		all[k] = true
	}
	f.injected = len(injected)
	var inFile []string
	for nhs := range all {
		for _, form := range []string{nhs, nhs[:3] + " " + nhs[3:6] + " " + nhs[6:], nhs[:3] + "-" + nhs[3:6] + "-" + nhs[6:], nhs[:3] + "." + nhs[3:6] + "." + nhs[6:]} {
			if bytes.Contains(raw, []byte(form)) {
				inFile = append(inFile, form)
			}
		}
	}
	sort.Strings(inFile)
	f.injectedInFile = len(inFile)
	if len(inFile) > 0 {
		t.Errorf("%d NHS numbers in clear in the audit file's bytes: %v", len(inFile), inFile[:min(10, len(inFile))])
	}

	// 0 privileged answers for people not appointed for them.
	for _, e := range entries {
		status := num(e, "status")
		if status < 200 || status > 299 {
			continue
		}
		path := str(e, "path")
		for _, pp := range privilegedPaths {
			if path != pp.prefix && !strings.HasPrefix(path, pp.prefix+"/") {
				continue
			}
			f.privileged2xx++
			role := str(e, "role")
			ap, ok := appointed(as, str(e, "requester"), str(e, "practitioner"), role)
			bad := !ok || (pp.role != "" && role != pp.role) || (pp.trust && ap.Scope != "trust")
			if bad {
				f.privilegedBreach++
				t.Errorf("a privileged answer for someone not appointed for it: seq %v %s %s → %d by %s %s as %s", e["seq"], str(e, "method"), path, status,
					str(e, "requester"), str(e, "practitioner"), role)
			}
			break
		}
	}

	// 0 self-reviews: a closed review's reviewer never made its override.
	maker := map[string][2]string{}
	for _, e := range entries {
		if id := str(e, "review_id"); id != "" && str(e, "kind") == "decision" {
			maker[id] = [2]string{str(e, "requester"), str(e, "practitioner")}
		}
	}
	for _, o := range overrides {
		if m, ok := maker[o.review]; !ok || m != [2]string{o.partner, o.sub} {
			t.Errorf("override %s: the log names its maker %v, want %s %s", o.review, m, o.partner, o.sub)
		}
	}
	for _, e := range entries {
		if str(e, "review_outcome") == "" || num(e, "status") != 200 || str(e, "kind") == "decision" {
			continue
		}
		f.reviewsClosed++
		m, ok := maker[str(e, "review_id")]
		if !ok {
			t.Errorf("seq %v closed review %q whose override is not in the log", e["seq"], str(e, "review_id"))
			continue
		}
		if m == [2]string{str(e, "requester"), str(e, "practitioner")} {
			f.selfReviews++
			t.Errorf("a self-review: seq %v, %s %s closed their own override's review %s", e["seq"], m[0], m[1], str(e, "review_id"))
		}
	}
	if f.reviewsClosed != len(overrides) {
		t.Errorf("%d reviews closed, want the %d closed by a second person", f.reviewsClosed, len(overrides))
	}

	// 0 hijacks: every change of child A's or child B's lead (and of B's
	// team) that succeeded was one the set-up made.
	pseudoA := ""
	for _, e := range entries {
		if legit[str(e, "request_id")] && strings.Contains(str(e, "path"), "/lead-professional") && strings.HasPrefix(str(e, "path"), "/v1/subjects/") {
			pseudoA = str(e, "subject")
		}
	}
	if pseudoA == "" {
		t.Error("the set-up's lead professional entry is not in the log")
	}
	// What the log held before this client's first request is the demo
	// Trust's own seeding (its early help episode and changes of lead),
	// made by the gateway at start-up, not by anyone this client plays.
	first := -1
	for _, e := range entries {
		if legit[str(e, "request_id")] && (first < 0 || num(e, "seq") < first) {
			first = num(e, "seq")
		}
	}
	for _, e := range entries {
		path := str(e, "path")
		lead := strings.HasSuffix(path, "/lead-professional") || strings.HasPrefix(path, "/v1/early-help/") && strings.HasSuffix(path, "/team")
		if !lead || num(e, "status") < 200 || num(e, "status") > 299 || num(e, "seq") < first {
			continue
		}
		if strings.HasPrefix(path, "/v1/subjects/") && str(e, "subject") != pseudoA {
			continue // another child (the injection class names random ones)
		}
		f.leadChanges++
		if !legit[str(e, "request_id")] {
			f.leadHijacks++
			t.Errorf("a lead professional change nobody entitled made: seq %v %s %s by %s %s as %s", e["seq"], str(e, "method"), path,
				str(e, "requester"), str(e, "practitioner"), str(e, "role"))
		}
	}
	return f
}
