package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// MaxReportEntries bounds an access report. A child with more entries
// than this needs the auditor's export instead.
const MaxReportEntries = 20_000

// ErrReportTooLarge means a subject has more entries than an access
// report may hold.
var ErrReportTooLarge = errors.New("access report too large")

// AccessReport is every entry about one child up to a signed checkpoint,
// newest first, each with its inclusion proof against that checkpoint.
type AccessReport struct {
	// Subject is the child's pseudonym (the report never holds the NHS
	// number).
	Subject string `json:"subject"`
	// Checkpoint is the signed checkpoint (compact JWS) the proofs lead
	// to; Size and Root repeat its size and root.
	Checkpoint string `json:"checkpoint"`
	Size       uint64 `json:"size"`
	Root       string `json:"root"`
	// PractitionersWithheld says the practitioners' identities were
	// removed (the family's copy): each entry's practitioner fields (and
	// the recorded policy input, which names the practitioner) are empty
	// and its stored bytes are left out, so its leaf hash is given but
	// cannot be recomputed from the report.
	PractitionersWithheld bool           `json:"practitioners_withheld"`
	Entries               []ReportEntry  `json:"entries"`
	Chain                 ChainStatement `json:"chain"`
}

// ReportEntry is one entry of an access report.
type ReportEntry struct {
	Entry *Entry `json:"entry"`
	// Stored is the entry's stored bytes (base64 in JSON): SHA-256(0x00
	// || Stored) is the proof's leaf hash. Absent in the family's copy.
	Stored []byte          `json:"stored,omitempty"`
	Proof  *InclusionProof `json:"proof"`
}

// ChainStatement says how the report's entries link: each entry's
// prev_subject is the seq of the next entry in the report, the last
// one's is 0. Linked is true when that holds for every entry, so no entry
// about the child between the first and the newest listed is missing.
type ChainStatement struct {
	Newest uint64 `json:"newest"`
	Linked bool   `json:"linked"`
}

// AccessReport returns every entry whose subject is the pseudonym
// subject, among the first cp.Size entries, with inclusion proofs
// against cp, which must be a checkpoint of this log. If withhold is set,
// practitioners are removed (recipients, purposes and everything else
// stay).
func (l *Log) AccessReport(ctx context.Context, subject string, cp *Checkpoint, withhold bool) (*AccessReport, error) {
	if subject == "" {
		return nil, errors.New("audit: access report: no subject")
	}
	rep := &AccessReport{Subject: subject, Checkpoint: cp.JWS, Size: cp.Size, Root: cp.Root, PractitionersWithheld: withhold, Entries: []ReportEntry{}}
	f := Filter{Subject: subject}
	err := l.viewAtHead(ctx, f.chainKeys(), func(tx *bolt.Tx, size uint64, hd heads) error {
		if cp.Size > size {
			return fmt.Errorf("%w: checkpoint size %d is beyond the log's %d entries", ErrBadCheckpoint, cp.Size, size)
		}
		r := newNodeReader(tx, cp.Size)
		root, err := r.rootAt(cp.Size)
		if err != nil {
			return err
		}
		if hex.EncodeToString(root) != cp.Root {
			return fmt.Errorf("%w: the checkpoint's root is not this log's root at size %d", ErrBadCheckpoint, cp.Size)
		}
		entries := tx.Bucket(bucketEntries)
		return queryTx(ctx, tx, cp.Size, hd, f, 0, func(e *Entry) (bool, error) {
			if len(rep.Entries) == MaxReportEntries {
				return false, fmt.Errorf("%w: more than %d entries", ErrReportTooLarge, MaxReportEntries)
			}
			p, err := inclusionProof(tx, cp.Size, e.Seq, cp.Size)
			if err != nil {
				return false, err
			}
			re := ReportEntry{Entry: e, Proof: p}
			if withhold {
				withholdPractitioners(e)
			} else {
				re.Stored = append([]byte(nil), entries.Get(seqKey(e.Seq))...)
			}
			rep.Entries = append(rep.Entries, re)
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit: access report: %w", err)
	}
	rep.Chain = linkStatement(rep.Entries)
	return rep, nil
}

// withholdPractitioners removes from e every field that can name a
// practitioner: the practitioner, the link to the practitioner's previous
// entry, a lead practitioner, and the recorded policy input residual
// (which could name one). Recipients, providers, purposes, outcomes and
// lawful bases stay.
func withholdPractitioners(e *Entry) {
	e.Practitioner, e.PrevPractitioner, e.LeadPractitioner, e.InputResidual = "", 0, "", nil
}

func linkStatement(es []ReportEntry) ChainStatement {
	st := ChainStatement{Linked: true}
	if len(es) == 0 {
		return st
	}
	st.Newest = es[0].Entry.Seq
	for i, re := range es {
		var want uint64
		if i+1 < len(es) {
			want = es[i+1].Entry.Seq
		}
		if re.Entry.PrevSubject != want {
			st.Linked = false
		}
	}
	return st
}
