package involvement

import (
	"crypto/sha256"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/boltfile"
)

func TestCodecRoundTrip(t *testing.T) {
	subj := sha256.Sum256([]byte("child"))
	id := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	at := time.Date(2026, 11, 22, 12, 0, 0, 123456789, time.UTC)
	for _, v := range []*Involvement{
		{Partner: "exley-csc", Practitioner: "sw-1", Contact: Contact{Phone: "+44 1632 960001", Email: "duty@example.org"},
			Service: "family-support", Kind: "child_in_need", Concern: true, ShareWithMatches: true, Shielded: true,
			Start: at.Add(-48 * time.Hour), End: at, EndReason: EndedByAgency, RenewedAt: at.Add(-time.Hour), RecordedAt: at.Add(-47 * time.Hour),
			UpdatedAt: at, UpdatedBy: Actor{Partner: "exley-csc", Practitioner: "sw-1", Role: "social_worker"}, RequestID: "req-1"},
		{Partner: "gp", Practitioner: "g", Contact: Contact{Email: "a@b.org"}, Service: "s", Kind: "health", Start: at},
	} {
		v.ID, v.Subject = formatID(prefixInvolvement, id), hexOf(subj[:])
		got, err := decodeInv(subj[:], id, encodeInv(v))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, v)
		}
	}
	raw := encodeInv(&Involvement{Partner: "p", Start: at})
	for n := range len(raw) {
		if _, err := decodeInv(subj[:], id, raw[:n]); err == nil {
			t.Fatalf("a value cut to %d of %d bytes decoded", n, len(raw))
		}
	}
	if _, err := decodeInv(subj[:], id, append(raw, 0)); err == nil {
		t.Fatal("a value with a trailing byte decoded")
	}
}

func hexOf(b []byte) string { return formatID("", b) }

func TestOpenRefusesFormat1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db, err := boltfile.Open(path, time.Second, bucketMeta, metaVersion, 1, dataBuckets...)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "reads index format 2") || !strings.Contains(err.Error(), "move the file aside") {
		t.Fatalf("open of a format-1 index: %v, want a refusal naming the format", err)
	}
}
