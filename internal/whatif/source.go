package whatif

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/childrens-trust/trustgate/internal/decision"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// AuditSource yields the decisions recorded in l whose entry time is in
// [from, to), newest first, one page of entries in memory at a time, each
// with its input rebuilt (InputOf; none for an entry that predates input
// recording).
func AuditSource(l *audit.Log) Source {
	return func(ctx context.Context, from, to time.Time, fn func(Record) error) error {
		return l.Select(ctx, audit.Filter{Kind: string(audit.KindDecision), From: from, To: to}, func(e *audit.Entry) (bool, error) {
			in, err := decision.InputOf(e)
			if err != nil && !errors.Is(err, decision.ErrNoInput) {
				return false, err
			}
			return true, fn(Record{Seq: e.Seq, In: in, Was: recorded(e)})
		})
	}
}

// recorded is the outcome an audit entry records.
func recorded(e *audit.Entry) Outcome {
	o := Outcome{Allow: e.Decision == "allow"}
	if o.Allow {
		o.Categories = sortedCopy(e.AllowedCategories)
		o.Protocol, o.Version, o.Rule = e.Protocol, e.ProtocolVersion, e.Rule
	}
	return o
}

// RecentInputs returns a function that reads the inputs of the n most
// recently recorded decisions, for the reload check that a candidate
// revision evaluates them without error (revision.Options.Recent).
func RecentInputs(l *audit.Log, n int) func(ctx context.Context) ([]revision.Recorded, error) {
	return func(ctx context.Context) ([]revision.Recorded, error) {
		var out []revision.Recorded
		if n <= 0 {
			return out, nil
		}
		err := l.Select(ctx, audit.Filter{Kind: string(audit.KindDecision)}, func(e *audit.Entry) (bool, error) {
			in, err := decision.InputOf(e)
			if errors.Is(err, decision.ErrNoInput) {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			out = append(out, revision.Recorded{Seq: e.Seq, Input: *in})
			return len(out) < n, nil
		})
		return out, err
	}
}

// ErrPeriod classifies a period that cannot be read.
var ErrPeriod = errors.New("invalid period")

// ParseSince reads a period length: a number and a unit, h (hours),
// d (days) or w (weeks): "30d", "12h", "2w". At most 5 years.
func ParseSince(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if len(s) < 2 {
		return 0, fmt.Errorf("%w: %q is not a number and a unit (h, d, w), e.g. 30d", ErrPeriod, s)
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: %q is not a positive number and a unit (h, d, w), e.g. 30d", ErrPeriod, s)
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'h':
		unit = time.Hour
	case 'd':
		unit = 24 * time.Hour
	case 'w':
		unit = 7 * 24 * time.Hour
	default:
		return 0, fmt.Errorf("%w: %q: the unit is h, d or w", ErrPeriod, s)
	}
	const maxSpan = 5 * 366 * 24 * time.Hour
	if time.Duration(n) > maxSpan/unit {
		return 0, fmt.Errorf("%w: %q is more than 5 years", ErrPeriod, s)
	}
	return time.Duration(n) * unit, nil
}
