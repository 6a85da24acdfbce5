package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/console"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// consoleCommand: `trustgate console link`, the development sign-in.
func consoleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "console", Short: "The web console (docs/console.md)"}
	var keyPath, sub, role, gateway, gatewayID string
	var lifetime time.Duration
	var asJSON bool
	link := &cobra.Command{
		Use:   "link --key KEY --sub PRACTITIONER [--role ROLE]",
		Short: "Print a one-time console sign-in link signed with an agency's key (development; console.dev_links)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyPath == "" || sub == "" || role == "" {
				return &usageError{fmt.Errorf("--key, --sub and --role are required")}
			}
			u, err := consoleLink(keyPath, sub, role, gatewayID, gateway, lifetime)
			if err != nil {
				return err
			}
			return emit(cmd, asJSON, map[string]string{"url": u, "practitioner": sub, "role": role}, func(w io.Writer) { fmt.Fprintln(w, u) })
		},
	}
	link.Flags().StringVar(&keyPath, "key", "", "the agency's private JWK")
	link.Flags().StringVar(&sub, "sub", "", "practitioner id")
	link.Flags().StringVar(&role, "role", "ig_lead", "the role to act in")
	link.Flags().StringVar(&gateway, "gateway", "http://127.0.0.1:8080", "the gateway's address as the browser reaches it")
	link.Flags().StringVar(&gatewayID, "gateway-id", "trustgate", "the gateway id (the config's gateway_id)")
	link.Flags().DurationVar(&lifetime, "lifetime", 30*time.Minute, "how long the link may wait to be used (at most console.link_max_lifetime)")
	addFormat(link, &asJSON)
	cmd.AddCommand(link)
	return cmd
}

func consoleLink(keyPath, sub, role, gatewayID, gateway string, lifetime time.Duration) (string, error) {
	key, partner, err := protocol.ReadPrivateKey(keyPath)
	if err != nil {
		return "", err
	}
	return console.Link(key, partner, sub, role, gatewayID, gateway, lifetime)
}
