package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/consent"
)

// maxReceiptBytes bounds what `consent receipt verify` reads.
const maxReceiptBytes = 1 << 20

func consentCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "consent", Short: "Consent receipts"}
	receipt := &cobra.Command{Use: "receipt", Short: "Consent receipts issued by the gateway"}
	var jwksSrc string
	var timeout time.Duration
	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify a consent or withdrawal receipt against the gateway's published key set",
		Long: `Verify a consent or withdrawal receipt (a compact JWS, or the JSON answer of
POST /v1/consents or /v1/consents/{id}/withdraw that carries it) against the
gateway's key set: a file saved from /.well-known/jwks.json (offline), or
its URL. Exit 0: the receipt verifies; 1: it does not.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if jwksSrc == "" {
				return &usageError{errors.New("--jwks is required: a key set file saved from /.well-known/jwks.json, or its URL")}
			}
			compact, err := readReceipt(args[0])
			if err != nil {
				return err
			}
			set, err := loadJWKS(cmd.Context(), jwksSrc, timeout)
			if err != nil {
				return err
			}
			r, err := consent.VerifyReceipt(compact, set)
			if err != nil {
				return fmt.Errorf("%s: %w: %w", args[0], errFound, err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printReceipt(out, r)
			return nil
		},
	}
	verify.Flags().StringVar(&jwksSrc, "jwks", "", "the gateway's key set: a file saved from /.well-known/jwks.json, or an http(s) URL")
	addTimeout(verify, &timeout, 10*time.Second)
	verify.Flags().BoolVar(&asJSON, "json", false, "print the verified receipt as JSON")
	addFormat(verify, &asJSON)
	receipt.AddCommand(verify)
	cmd.AddCommand(receipt)
	return cmd
}

// readReceipt reads a compact JWS, or a JSON object whose "receipt"
// member holds one.
func readReceipt(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReceiptBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxReceiptBytes {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, errFound, maxReceiptBytes)
	}
	b = bytes.TrimSpace(b)
	if bytes.HasPrefix(b, []byte("{")) {
		var m struct {
			Receipt string `json:"receipt"`
		}
		if err := json.Unmarshal(b, &m); err != nil || m.Receipt == "" {
			return nil, fmt.Errorf("%s: %w: a JSON file must be an answer of the gateway with a \"receipt\" member", path, errFound)
		}
		return []byte(m.Receipt), nil
	}
	return b, nil
}

func printReceipt(w io.Writer, r *consent.Receipt) {
	x := r.Trustgate
	fmt.Fprintf(w, "receipt %s verifies (%s, issued by %s for %s)\n", r.ConsentReceiptID, r.Version, x.Issuer, x.Trust)
	switch x.ReceiptType {
	case consent.ReceiptWithdrawal:
		fmt.Fprintf(w, "  withdrawal of:  %s (%s), withdrawn by %s at %s\n", x.Withdraws, x.Outcome, x.WithdrawnBy, x.WithdrawnAt)
	default:
		fmt.Fprintf(w, "  consent:        %s: %s by %s\n", x.ConsentID, x.Outcome, x.GivenBy)
	}
	fmt.Fprintf(w, "  recorded:       %s by %s (%s)\n", time.Unix(r.ConsentTimestamp, 0).UTC().Format(time.RFC3339), x.RecordedBy.Partner, x.RecordedBy.Practitioner)
	fmt.Fprintf(w, "  subject:        %s (the gateway's pseudonym of the NHS number)\n", r.PIIPrincipalID)
	fmt.Fprintf(w, "  jurisdiction:   %s\n", r.Jurisdiction)
	for _, s := range r.Services {
		for _, p := range s.Purposes {
			fmt.Fprintf(w, "  purpose:        %s (%s)\n", strings.Join(p.PurposeCategory, ", "), p.Purpose)
			fmt.Fprintf(w, "    categories:   %s\n", strings.Join(p.PIICategory, ", "))
			if p.ThirdPartyDisclosure {
				fmt.Fprintf(w, "    disclosed to: %s\n", p.ThirdPartyName)
			}
			fmt.Fprintf(w, "    termination:  %s\n", p.Termination)
		}
	}
	var cs []string
	for _, c := range r.PIIControllers {
		cs = append(cs, fmt.Sprintf("%s (%s, %s)", c.PIIController, c.PartnerID, c.Role))
	}
	fmt.Fprintf(w, "  controllers:    %s\n", strings.Join(cs, "; "))
	fmt.Fprintf(w, "  valid from:     %s\n", x.ValidFrom)
	if x.ValidUntil != "" {
		fmt.Fprintf(w, "  valid until:    %s\n", x.ValidUntil)
	}
}
