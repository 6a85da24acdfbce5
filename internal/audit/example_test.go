package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// The gateway appends one entry per request before it answers, and an
// auditor verifies the file offline. The hash printed here pins the
// on-disk format: it changes only if the canonical bytes change.
func Example() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.db")
	ctx := context.Background()

	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	seq, hash, err := l.Append(ctx, &audit.Entry{
		Time:      time.Date(2026, 3, 14, 9, 30, 0, 0, time.UTC),
		RequestID: "3b99869986639b0e60929cbe",
		Kind:      audit.KindDecision,
		Method:    "POST",
		Path:      "/v1/decisions",
		Status:    200,
		Requester: "exley-academy",
		Purpose:   "education_welfare",
		Decision:  "deny",
		Reasons:   []string{"no protocol in force for purpose"},
	})
	if err != nil {
		fmt.Println("answer 503:", err) // errors.Is(err, audit.ErrUnavailable)
		return
	}
	fmt.Println("entry", seq, hash)
	if err := l.Close(); err != nil {
		fmt.Println(err)
		return
	}

	rep, err := audit.Verify(ctx, path, audit.Options{})
	if err != nil {
		fmt.Println(err) // errors.As(err, new(*audit.TamperError)) names the damaged entry
		return
	}
	fmt.Println("verified", rep.Entries, "entries, head", rep.Head == hash)
	// Output:
	// entry 1 6f0452fe18c41531a33819b78c66e82369340d52920b65bfa1db0a1bc27780fe
	// verified 1 entries, head true
}

// At start-up the gateway re-seeds its JWT replay cache from the entries
// of the last few minutes, newest first.
func ExampleLog_ReverseScan() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	now := time.Date(2026, 3, 14, 9, 30, 0, 0, time.UTC)
	for i, age := range []time.Duration{20 * time.Minute, 4 * time.Minute, time.Minute} {
		e := audit.Entry{Time: now.Add(-age), Kind: audit.KindDecision, TokenID: fmt.Sprint("jti-", i), Requester: "agency:police-north"}
		if _, _, err := l.Append(ctx, &e); err != nil {
			fmt.Println(err)
			return
		}
	}

	cutoff := now.Add(-5 * time.Minute)
	err = l.ReverseScan(ctx, func(e *audit.Entry) (bool, error) {
		if e.Time.Before(cutoff) {
			return false, nil // older entries cannot hold a live token
		}
		fmt.Println(e.Seq, e.Requester, e.TokenID)
		return true, nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// 3 agency:police-north jti-2
	// 2 agency:police-north jti-1
}
