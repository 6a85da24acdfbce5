package involvement

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"
)

// The stored form of an involvement (format 2). The value leaves out
// what its key already says (the child's pseudonym and the id) and holds
// the rest as a flags byte, eleven length-prefixed strings and five
// times, each a signed varint of Unix seconds and an unsigned varint of
// nanoseconds (0 and 0: none):
//
//	flags(1: concern 1, share_with_matches 2, shielded 4)
//	partner practitioner phone email service kind end_reason
//	updated_by.partner updated_by.practitioner updated_by.role request_id
//	start end renewed_at recorded_at updated_at
//
// Format 1 stored each involvement as its full JSON (about 450 bytes,
// the pseudonym repeated and five RFC 3339 times); this is about a third
// of that and decodes without reflection.

const (
	flagConcern = 1 << iota
	flagShare
	flagShielded
)

var errCorrupt = errors.New("malformed stored involvement")

func encodeInv(v *Involvement) []byte {
	n := 1 + 5*(binary.MaxVarintLen64+binary.MaxVarintLen32)
	strs := [...]string{v.Partner, v.Practitioner, v.Contact.Phone, v.Contact.Email, v.Service, v.Kind, v.EndReason,
		v.UpdatedBy.Partner, v.UpdatedBy.Practitioner, v.UpdatedBy.Role, v.RequestID}
	for _, s := range strs {
		n += binary.MaxVarintLen16 + len(s)
	}
	b := make([]byte, 1, n)
	if v.Concern {
		b[0] |= flagConcern
	}
	if v.ShareWithMatches {
		b[0] |= flagShare
	}
	if v.Shielded {
		b[0] |= flagShielded
	}
	for _, s := range strs {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, t := range [...]time.Time{v.Start, v.End, v.RenewedAt, v.RecordedAt, v.UpdatedAt} {
		var sec int64
		var ns uint64
		if !t.IsZero() {
			sec, ns = t.Unix(), uint64(t.Nanosecond())
		}
		b = binary.AppendVarint(b, sec)
		b = binary.AppendUvarint(b, ns)
	}
	return b
}

// decodeInv decodes the stored value raw of the involvement whose key is
// subj ‖ id.
func decodeInv(subj, id, raw []byte) (*Involvement, error) {
	if len(raw) < 1 {
		return nil, errCorrupt
	}
	v := &Involvement{
		ID: formatID(prefixInvolvement, id), Subject: hex.EncodeToString(subj),
		Concern: raw[0]&flagConcern != 0, ShareWithMatches: raw[0]&flagShare != 0, Shielded: raw[0]&flagShielded != 0,
	}
	p := raw[1:]
	for _, s := range [...]*string{&v.Partner, &v.Practitioner, &v.Contact.Phone, &v.Contact.Email, &v.Service, &v.Kind, &v.EndReason,
		&v.UpdatedBy.Partner, &v.UpdatedBy.Practitioner, &v.UpdatedBy.Role, &v.RequestID} {
		n, k := binary.Uvarint(p)
		if k <= 0 || uint64(len(p)-k) < n {
			return nil, errCorrupt
		}
		*s = string(p[k : k+int(n)])
		p = p[k+int(n):]
	}
	for _, t := range [...]*time.Time{&v.Start, &v.End, &v.RenewedAt, &v.RecordedAt, &v.UpdatedAt} {
		sec, k := binary.Varint(p)
		if k <= 0 {
			return nil, errCorrupt
		}
		p = p[k:]
		ns, k := binary.Uvarint(p)
		if k <= 0 || ns >= 1e9 {
			return nil, errCorrupt
		}
		p = p[k:]
		if sec != 0 || ns != 0 {
			*t = time.Unix(sec, int64(ns)).UTC()
		}
	}
	if len(p) != 0 {
		return nil, errCorrupt
	}
	return v, nil
}
