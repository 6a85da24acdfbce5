package consent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/childrens-trust/trustgate/internal/consent"
)

// A parent's consent is recorded, holds, and is withdrawn; the policy sees
// the withdrawal in the very next decision's input.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "consent-example-")
	defer os.RemoveAll(dir)
	store, err := consent.Open(filepath.Join(dir, "state.db"), consent.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()

	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	rec := &consent.Record{
		Outcome: consent.Given, GivenBy: "parent",
		Purposes: []string{"early_help"}, Categories: []string{"immunisations"},
		Recipients: consent.Recipients{Partners: []string{"csc"}},
		Obtained:   "written", EvidenceRef: "EH-2026-0042",
	}
	if err := consent.Check(rec, vocab{}, now); err != nil {
		fmt.Println(err)
		return
	}
	rec.ID, rec.Subject, rec.RecordedAt = "cns-example", "pseudonym-of-the-child", now
	rec.ReceiptID, rec.Receipt = consent.NewReceiptID(), "(compact JWS)"
	rec.RecordedBy = consent.Actor{Partner: "csc", Practitioner: "ew-0042"}
	if err := store.Record(ctx, rec); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.Status(now))

	w := &consent.Withdrawal{By: "parent", Obtained: "verbal", RecordedAt: now.Add(time.Hour), ReceiptID: consent.NewReceiptID()}
	if err := consent.CheckWithdrawal(rec, w, now.Add(time.Hour)); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := store.Withdraw(ctx, rec.ID, w); err != nil {
		fmt.Println(err)
		return
	}
	inputs, _ := store.ForDecision(ctx, "pseudonym-of-the-child")
	fmt.Println(inputs[0].ID, inputs[0].WithdrawnNS == now.Add(time.Hour).UnixNano())

	_, err = store.Withdraw(ctx, rec.ID, w)
	fmt.Println(err)
	// Output:
	// active
	// cns-example true
	// consent: conflict with the stored state: id: consent cns-example was already withdrawn (at 2026-11-22T13:00:00Z)
}
