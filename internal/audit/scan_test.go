package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// strictDecode is the reference the scanner must not be looser than:
// encoding/json into the stored type, unknown fields rejected, nothing
// after the value.
func strictDecode(data []byte) (Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(asStored(&e)); err != nil {
		return Entry{}, err
	}
	if dec.InputOffset() != int64(len(data)) {
		return Entry{}, errSyntax
	}
	return e, nil
}

func marshal(t testing.TB, e Entry) []byte {
	t.Helper()
	b, err := marshalStored(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameFields reports whether the scanner's index fields are those of e.
func sameFields(got indexFields[[]byte], e Entry) bool {
	want := fieldsOf(&e)
	return string(got.subject) == want.subject && string(got.requester) == want.requester &&
		string(got.practitioner) == want.practitioner && string(got.provider) == want.provider &&
		string(got.purpose) == want.purpose && string(got.protocol) == want.protocol &&
		string(got.kind) == want.kind && string(got.decision) == want.decision &&
		string(got.overrideGround) == want.overrideGround && string(got.reviewID) == want.reviewID &&
		got.override == want.override && got.at.Equal(want.at)
}

// oddEntry has strings that json.Marshal escapes or that are not ASCII.
func oddEntry() Entry {
	e := TypicalEntry(7)
	e.Seq, e.PrevHash = 7, GenesisHash
	e.Error = "field \"purpose\": <script>&amp; \\ / \b\f\n\r\t \x00\x1f \u2028\u2029 é 😀 \xff"
	e.Reasons = []string{"", "ünïcödé", "tab\there"}
	e.Status = -1
	e.Time = time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)
	return e
}

func TestScanEntryAcceptsMarshalOutput(t *testing.T) {
	entries := map[string]Entry{
		"typical":   TypicalEntry(1),
		"odd":       oddEntry(),
		"minimal":   {Seq: 1, PrevHash: GenesisHash, Kind: KindAuthFailure},
		"max seq":   {Seq: 1<<53 - 1, PrevHash: GenesisHash},
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
			if f.seq != e.Seq || string(f.prevHash) != e.PrevHash || !sameFields(f.fields, e) {
				t.Fatalf("scanned seq %d prev %q fields %+v, want %d %q %+v", f.seq, f.prevHash, f.fields, e.Seq, e.PrevHash, e)
			}
		})
	}
}

func TestScanEntryRejects(t *testing.T) {
	valid := string(marshal(t, Entry{Seq: 3, PrevHash: GenesisHash, Time: time.Unix(0, 0).UTC()}))
	tests := map[string]string{
		"empty":             ``,
		"not an object":     `[]`,
		"null":              `null`,
		"unterminated":      valid[:len(valid)-1],
		"trailing data":     valid + ` `,
		"two objects":       valid + valid,
		"unknown field":     `{"seq":3,"approved":true}`,
		"short name":        `{"n":3}`,
		"hash stored":       `{"hash":"","seq":3}`,
		"case-folded key":   `{"SEQ":3}`,
		"escaped key":       `{"\u0073eq":3}`,
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
		"bool as string":    `{"override":"true"}`,
		"bool as number":    `{"override":1}`,
		"truncated bool":    `{"override":tru}`,
		"bad time":          `{"time":"yesterday"}`,
		"time as seconds":   `{"time":1795339737}`,
		"time not UTC":      `{"time":"2026-01-01T01:00:00+01:00"}`,
		"time lowercase z":  `{"time":"2026-01-01T00:00:00z"}`,
		"time fraction 0":   `{"time":"2026-01-01T00:00:00.50Z"}`,
		"time escaped":      `{"time":"2026-01-01T00:00:00\u005a"}`,
		"residual as value": `{"input_residual":[1]}`,
		"control character": "{\"error\":\"a\x01b\"}",
		"invalid UTF-8":     "{\"error\":\"\xff\"}",
		"bad escape":        `{"error":"\x"}`,
		"short u escape":    `{"error":"\u12"}`,
		"escaped prev_hash": `{"prev_hash":"\u0030"}`,
		"missing colon":     `{"seq" 3}`,
		"missing comma":     `{"kind":"x" "seq":3}`,
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
// encoding/json decode, and agrees with it on seq, prev_hash and the
// indexed fields.
func FuzzScanEntry(f *testing.F) {
	for _, e := range []Entry{TypicalEntry(1), oddEntry(), {}} {
		f.Add(marshal(f, e))
	}
	for _, s := range []string{
		`{}`, ` { "seq" : 1 , "prev_hash" : "" } `, `{"seq":1,"seq":1}`, `{"SEQ":1}`, `{"override":true}`, `{"override":false,"purpose":"a\u0062"}`,
		`{"hash":"\u0000"}`, `{"time":"2026-01-01T00:00:00Z"}`, `{"time":null}`, `{"status":-0}`,
		`{"time":"2026-01-01T00:00:00.5Z","subject":"AP8","request_id":"~x","prev_hash":"\u007ex"}`, `{"input_residual":"[]"}`, `{"reasons":["\u001e"]}`,
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
		if got.seq != want.Seq || string(got.prevHash) != want.PrevHash || !sameFields(got.fields, want) {
			t.Fatalf("scanEntry(%q) = seq %d prev %q fields %+v; encoding/json says %+v",
				data, got.seq, got.prevHash, got.fields, want)
		}
	})
}

// FuzzScanEntryMarshal checks that the scanner accepts whatever
// json.Marshal makes of an entry.
func FuzzScanEntryMarshal(f *testing.F) {
	f.Add(uint64(1), "req-1", "allow", "<&>\u2028", "x", -1)
	f.Add(uint64(1<<63), "", "", "\xff\x00", strings.Repeat("é", 10), 0)
	f.Fuzz(func(t *testing.T, seq uint64, a, b, c, d string, status int) {
		seq %= 1 << 53 // the canonical form's integers are exact below 2^53
		e := Entry{
			Seq: seq, RequestID: a, Decision: b, Error: c, Subject: d, Status: status, Override: status%2 == 0, Purpose: c,
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
		if got.seq != seq || string(got.prevHash) != want.PrevHash || !sameFields(got.fields, want) {
			t.Fatalf("scanEntry(%s) = seq %d prev %q", data, got.seq, got.prevHash)
		}
	})
}

func TestSpecial8(t *testing.T) {
	naive := func(b []byte) bool {
		for _, c := range b {
			if !plain[c] {
				return true
			}
		}
		return false
	}
	r := rand.New(rand.NewPCG(8, 8))
	var b [8]byte
	for i := range 2_000_000 {
		for j := range b {
			switch r.IntN(4) {
			case 0: // any byte
				b[j] = byte(r.IntN(256))
			default: // mostly plain, near the edges
				b[j] = []byte{0x1f, 0x20, 0x21, '"', '#', '[', '\\', ']', 0x7e, 0x7f, 0x80, 'a'}[r.IntN(12)]
			}
		}
		if i%3 == 0 {
			for j := range b {
				b[j] = byte(0x20 + r.IntN(0x5f))
			}
		}
		if got, want := special8(binary.LittleEndian.Uint64(b[:])), naive(b[:]); got != want {
			t.Fatalf("special8(% x) = %v, want %v", b, got, want)
		}
	}
}

// TestSpliceIsMarshal checks that the committer's splice gives exactly
// the bytes the full canonical encoding gives for the whole entry.
func TestSpliceIsMarshal(t *testing.T) {
	if !canSplice {
		t.Fatal("the stored layout no longer allows splicing: the committer encodes in full (slower); fix the field order")
	}
	entries := []Entry{TypicalEntry(1), oddEntry(), {Time: time.Unix(0, 0).UTC(), Kind: KindAccess}}
	e := TypicalEntry(2)
	e.InputResidual = Residual(`{"a":"<b>","c":[1,2]}`)
	e.Override, e.ReviewID = true, "rev-1"
	entries = append(entries, e)
	r := rand.New(rand.NewPCG(2, 3))
	for i, e := range entries {
		for _, links := range [][2]uint64{{0, 0}, {7, 0}, {0, 9}, {1 << 40, 3}} {
			seq := uint64(i*1000) + r.Uint64N(1<<50) + 1
			prev := hashHex([]byte{byte(i)})
			full := e
			full.Seq, full.PrevSubject, full.PrevPractitioner, full.PrevHash, full.Hash = seq, links[0], links[1], prev, ""
			want := marshal(t, full)
			// In the template's spare capacity, and (clipped) in a new buffer.
			for _, clip := range []bool{false, true} {
				tmpl, err := marshalTemplate(e)
				if err != nil {
					t.Fatal(err)
				}
				if clip {
					tmpl = slices.Clip(tmpl)
				}
				if got := splice(tmpl, seq, links[0], links[1], prev); !bytes.Equal(got, want) {
					t.Fatalf("entry %d links %v (clipped %t):\nsplice  %s\nmarshal %s", i, links, clip, got, want)
				}
			}
		}
	}
}

// FuzzChainFields checks that the heads replay's field scan (chainFields)
// finds exactly the subject and practitioner the full scan finds in any
// entry Append writes, whatever other fields hold (their keys among them),
// or declines (ok false) and leaves it to the full scan.
func FuzzChainFields(f *testing.F) {
	f.Add("prac-1", "ab12", `"subject":"x"`, `"practitioner":"y"`)
	f.Add("", "", `\"subject\":\"`, "")
	f.Add(`a"b`, `c\d`, "\x00", "é")
	f.Add("", "s", `","subject":"`, `","practitioner":"z`)
	f.Fuzz(func(t *testing.T, practitioner, subject, a, b string) {
		e := TypicalEntry(7)
		e.Practitioner, e.Subject = practitioner, subject
		e.LeadPractitioner, e.Error, e.Reasons, e.Role = a, b, []string{a, b}, b
		e.InputResidual = Residual(a)
		makeStorable(&e)
		rec, err := encodeEntry(e, 9, GenesisHash)
		if err != nil {
			return // not an entry Append would write
		}
		want, err := scanEntry(rec.val)
		if err != nil {
			t.Fatalf("scanEntry(%s): %v", rec.val, err)
		}
		s, p, ok := chainFields(rec.val)
		if !ok {
			return
		}
		if string(s) != string(want.fields.subject) || string(p) != string(want.fields.practitioner) {
			t.Fatalf("chainFields(%s) = %q, %q; scanEntry: %q, %q", rec.val, s, p, want.fields.subject, want.fields.practitioner)
		}
	})
}
