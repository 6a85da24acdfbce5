package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
)

func appointmentCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "appointment", Short: "Sign, withdraw and list appointments of IG leads and auditors (docs/security.md)"}
	var keyPath, signer string
	var asJSON bool
	sign := &cobra.Command{
		Use:   "sign --key KEY FILE",
		Short: "Add the partner's (or, with the Trust's key, the Trust's) signature to an appointment",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return &usageError{fmt.Errorf("--key is required")}
			}
			key, kidSigner, err := protocol.ReadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			who := cmp.Or(signer, kidSigner)
			if err := authz.SignFile(args[0], key, who); err != nil {
				if errors.Is(err, protocol.ErrNotSignatory) || errors.Is(err, authz.ErrInvalid) {
					return fmt.Errorf("%w: %w", errFound, err)
				}
				return err
			}
			res := signedResult{File: args[0], Signer: who, Signatures: args[0] + protocol.SignatureSuffix}
			return emit(cmd, asJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "signed %s as %s (%s)\n", res.File, res.Signer, res.Signatures)
			})
		},
	}
	sign.Flags().StringVar(&keyPath, "key", "", "the signer's private JWK (required)")
	sign.Flags().StringVar(&signer, "as", "", "signer id (a partner, or the Trust's id); default: from the key's kid")

	var effective string
	withdraw := &cobra.Command{
		Use:   "withdraw --key KEY --effective TIME FILE",
		Short: "End an appointment with a signed withdrawal (FILE.withdrawals.json)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, who, at, now, err := withdrawalArgs(keyPath, effective, signer)
			if err != nil {
				return err
			}
			if err := authz.WithdrawFile(args[0], key, who, at, now); err != nil {
				if errors.Is(err, protocol.ErrNotSignatory) || errors.Is(err, authz.ErrInvalid) || errors.Is(err, protocol.ErrWithdrawalFile) {
					return fmt.Errorf("%w: %w", errFound, err)
				}
				return err
			}
			res := withdrawnResult{File: args[0], Signer: who, Effective: at.UTC(), Withdrawals: args[0] + protocol.WithdrawalSuffix}
			return emit(cmd, asJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "%s withdraws %s from %s; it confers nothing from then, once the gateway has reloaded\n", who, args[0], at.UTC().Format(time.RFC3339))
			})
		},
	}
	withdraw.Flags().StringVar(&keyPath, "key", "", "a signatory's private JWK (required)")
	withdraw.Flags().StringVar(&signer, "as", "", "signer id; default: from the key's kid")
	withdraw.Flags().StringVar(&effective, "effective", "", `when it takes effect: YYYY-MM-DD, RFC 3339 or "now" (required)`)

	var dir string
	list := &cobra.Command{
		Use:   "list [--dir DIR]",
		Short: "List every appointment (DIR/appointments), valid or not, with reasons; exit 1 if any file is unfit to load",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := registry.Load(cmd.Context(), filepath.Join(dir, protocol.RegistryFile))
			if err != nil {
				return err
			}
			sts, err := authz.LoadDir(filepath.Join(dir, authz.Dir), reg, time.Now())
			if err != nil {
				return err
			}
			faults := 0
			for _, st := range sts {
				faults += len(st.Faults)
			}
			err = emit(cmd, asJSON, sts, func(out io.Writer) {
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "APPOINTMENT\tPARTNER\tPRACTITIONER\tROLE\tSCOPE\tIN FORCE\tREASONS")
				for _, st := range sts {
					a := st.Appointment
					if a == nil {
						a = &authz.Appointment{ID: filepath.Base(st.File)}
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", a.ID, a.Partner, a.Practitioner, a.Role, a.Scope, st.InForce, strings.Join(append(st.Reasons, st.Warnings...), "; "))
				}
				w.Flush()
			})
			if err != nil {
				return err
			}
			if faults > 0 {
				return fmt.Errorf("%w: %d problem(s) in the appointment files", errFound, faults)
			}
			return nil
		},
	}
	list.Flags().StringVar(&dir, "dir", ".demo/protocols", "protocols directory (its appointments/ and trust.yaml)")
	for _, c := range []*cobra.Command{sign, withdraw, list} {
		addFormat(c, &asJSON)
	}
	cmd.AddCommand(sign, withdraw, list)
	return cmd
}

// signedResult is what a sign command prints: the file signed, by whom,
// and the file that holds the signatures.
type signedResult struct {
	File       string `json:"file"`
	Signer     string `json:"signer"`
	Signatures string `json:"signatures_file"`
}

// withdrawnResult is what a withdraw command prints.
type withdrawnResult struct {
	File        string    `json:"file"`
	Signer      string    `json:"signer"`
	Effective   time.Time `json:"effective"`
	Withdrawals string    `json:"withdrawals_file"`
}
