package main

import (
	"cmp"
	"errors"
	"fmt"
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
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s as %s (%s%s)\n", args[0], who, args[0], protocol.SignatureSuffix)
			return nil
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
			fmt.Fprintf(cmd.OutOrStdout(), "%s withdraws %s from %s; it confers nothing from then, once the gateway has reloaded\n", who, args[0], at.UTC().Format(time.RFC3339))
			return nil
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
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "APPOINTMENT\tPARTNER\tPRACTITIONER\tROLE\tSCOPE\tIN FORCE\tREASONS")
			faults := 0
			for _, st := range sts {
				a := st.Appointment
				if a == nil {
					a = &authz.Appointment{ID: filepath.Base(st.File)}
				}
				faults += len(st.Faults)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", a.ID, a.Partner, a.Practitioner, a.Role, a.Scope, st.InForce, strings.Join(append(st.Reasons, st.Warnings...), "; "))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if faults > 0 {
				return fmt.Errorf("%w: %d problem(s) in the appointment files", errFound, faults)
			}
			return nil
		},
	}
	list.Flags().StringVar(&dir, "dir", ".demo/protocols", "protocols directory (its appointments/ and trust.yaml)")
	cmd.AddCommand(sign, withdraw, list)
	return cmd
}
