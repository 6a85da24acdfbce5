package whatif

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/decision/decisiontest"

	"github.com/childrens-trust/trustgate/internal/policy"
)

// records makes n recorded decisions, decided by rev (the outcome each
// was recorded with), with seqs 1..n.
func records(t testing.TB, rev *policy.Revision, g *decisiontest.Generator, n int) []Record {
	t.Helper()
	out := make([]Record, n)
	for i := range out {
		in := g.Next()
		d, err := rev.Decide(context.Background(), &in)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = Record{Seq: uint64(i + 1), Input: raw, Was: OutcomeOf(d)}
	}
	return out
}

// memorySource serves records in order, filtered by the time of their
// input (a record without one is at unrecordedAt, like an old entry).
func memorySource(recs []Record) Source {
	return func(ctx context.Context, from, to time.Time, fn func(Record) error) error {
		for _, r := range recs {
			t := unrecordedAt
			if len(r.Input) > 0 {
				var in policy.Input
				if err := json.Unmarshal(r.Input, &in); err != nil {
					return err
				}
				t = time.Unix(0, in.TimeNS)
			}
			if t.Before(from) || !t.Before(to) {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
}

var unrecordedAt = time.Date(2026, 8, 2, 0, 0, 0, 0, time.UTC)
