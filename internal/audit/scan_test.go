package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// strictDecode is the reference the scanner must not be looser than:
// encoding/json, unknown fields rejected, nothing after the value.
func strictDecode(data []byte) (Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		return e, err
	}
	if dec.InputOffset() != int64(len(data)) {
		return e, errSyntax
	}
	return e, nil
}

func marshal(t testing.TB, e Entry) []byte {
	t.Helper()
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// oddEntry has strings that json.Marshal escapes or that are not ASCII.
func oddEntry() Entry {
	e := TypicalEntry(7)
	e.Seq, e.PrevHash = 7, GenesisHash
	e.Error = "field \"purpose\": <script>&amp; \\ / \b\f\n\r\t \x00\x1f \u2028\u2029 é 😀 \xff"
	e.Reasons = []string{"", "ünïcödé", "tab\there"}
	e.Status = -1
	e.Time = time.Date(1, 1, 1, 0, 0, 0, 1, time.FixedZone("", -7*3600))
	return e
}

func TestScanEntryAcceptsMarshalOutput(t *testing.T) {
	entries := map[string]Entry{
		"typical":   TypicalEntry(1),
		"odd":       oddEntry(),
		"minimal":   {Seq: 1, PrevHash: GenesisHash, Kind: KindAuthFailure},
		"max seq":   {Seq: 1<<64 - 1, PrevHash: GenesisHash},
		"all empty": {},
	}
	for name, e := range entries {
		t.Run(name, func(t *testing.T) {
			e.Hash = ""
			b := marshal(t, e)
			f, err := scanEntry(b)
			if err != nil {
				t.Fatalf("scanEntry(%s): %v", b, err)
			}
			if f.seq != e.Seq || string(f.prevHash) != e.PrevHash || len(f.hash) != 0 {
				t.Fatalf("scanned seq %d prev %q hash %q, want %d %q \"\"", f.seq, f.prevHash, f.hash, e.Seq, e.PrevHash)
			}
		})
	}
}

func TestScanEntryRejects(t *testing.T) {
	valid := string(marshal(t, Entry{Seq: 3, PrevHash: GenesisHash}))
	tests := map[string]string{
		"empty":             ``,
		"not an object":     `[]`,
		"null":              `null`,
		"unterminated":      valid[:len(valid)-1],
		"trailing data":     valid + ` `,
		"two objects":       valid + valid,
		"unknown field":     `{"seq":3,"approved":true}`,
		"case-folded key":   `{"SEQ":3}`,
		"escaped key":       `{"s\u0065q":3}`,
		"duplicate key":     `{"seq":3,"seq":4}`,
		"leading zero":      `{"seq":03}`,
		"fraction":          `{"seq":3.0}`,
		"exponent":          `{"seq":3e0}`,
		"negative seq":      `{"seq":-3}`,
		"seq overflow":      `{"seq":18446744073709551616}`,
		"seq as string":     `{"seq":"3"}`,
		"string as number":  `{"kind":3}`,
		"array of numbers":  `{"reasons":[1]}`,
		"null array":        `{"reasons":null}`,
		"bad time":          `{"time":"yesterday"}`,
		"control character": "{\"error\":\"a\x01b\"}",
		"invalid UTF-8":     "{\"error\":\"\xff\"}",
		"bad escape":        `{"error":"\x"}`,
		"short u escape":    `{"error":"\u12"}`,
		"escaped prev_hash": `{"prev_hash":"\u0030"}`,
		"missing colon":     `{"seq" 3}`,
		"missing comma":     `{"seq":3 "kind":"x"}`,
		"trailing comma":    `{"seq":3,}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if f, err := scanEntry([]byte(in)); err == nil {
				t.Fatalf("scanEntry(%q) accepted: %+v", in, f)
			}
		})
	}
}

// FuzzScanEntry checks that the scanner is never looser than the strict
// encoding/json decode, and agrees with it on seq, prev_hash and hash.
func FuzzScanEntry(f *testing.F) {
	for _, e := range []Entry{TypicalEntry(1), oddEntry(), {}} {
		f.Add(marshal(f, e))
	}
	for _, s := range []string{
		`{}`, ` { "seq" : 1 , "prev_hash" : "" } `, `{"seq":1,"seq":1}`, `{"SEQ":1}`,
		`{"hash":"\u0000"}`, `{"time":"2026-01-01T00:00:00Z"}`, `{"time":null}`, `{"status":-0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := scanEntry(data)
		if err != nil {
			return
		}
		want, err := strictDecode(data)
		if err != nil {
			t.Fatalf("scanEntry accepted %q, encoding/json rejects it: %v", data, err)
		}
		if got.seq != want.Seq || string(got.prevHash) != want.PrevHash || (len(got.hash) == 0) != (want.Hash == "") {
			t.Fatalf("scanEntry(%q) = seq %d prev %q hash %q; encoding/json says %d %q %q",
				data, got.seq, got.prevHash, got.hash, want.Seq, want.PrevHash, want.Hash)
		}
	})
}

// FuzzScanEntryMarshal checks that the scanner accepts whatever
// json.Marshal makes of an entry.
func FuzzScanEntryMarshal(f *testing.F) {
	f.Add(uint64(1), "req-1", "allow", "<&>\u2028", "x", -1)
	f.Add(uint64(1<<63), "", "", "\xff\x00", strings.Repeat("é", 10), 0)
	f.Fuzz(func(t *testing.T, seq uint64, a, b, c, d string, status int) {
		e := Entry{
			Seq: seq, RequestID: a, Decision: b, Error: c, Subject: d, Status: status,
			PrevHash: fmt.Sprintf("%064x", seq),
			Kind:     Kind(a), Reasons: []string{b, c}, Categories: []string{d},
			Time: time.Unix(int64(seq%(1<<35)), int64(status)%1e9),
		}
		data := marshal(t, e)
		got, err := scanEntry(data)
		if err != nil {
			t.Fatalf("scanEntry(%s): %v", data, err)
		}
		want, err := strictDecode(data)
		if err != nil {
			t.Fatal(err)
		}
		if got.seq != seq || string(got.prevHash) != want.PrevHash {
			t.Fatalf("scanEntry(%s) = seq %d prev %q", data, got.seq, got.prevHash)
		}
	})
}
