package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/devcert"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
)

func demoCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "demo", Short: "Prepare the demo Trust"}
	var dir, listen string
	var force, ifAbsent, asJSON bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Generate demo partner keys, sign the demo protocols, write a config",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ifAbsent {
				if _, err := os.Stat(filepath.Join(dir, "trustgate.yaml")); err == nil {
					return emit(cmd, asJSON, map[string]any{"dir": dir, "prepared": false}, func(w io.Writer) {
						fmt.Fprintf(w, "demo Trust already prepared in %s\n", dir)
					})
				}
			}
			if err := demo.Init(dir, demo.Options{Listen: listen, Force: force}); err != nil {
				return err
			}
			res := map[string]any{"dir": dir, "prepared": true, "config": filepath.Join(dir, "trustgate.yaml"),
				"keys": filepath.Join(dir, "keys"), "protocols": filepath.Join(dir, "protocols")}
			return emit(cmd, asJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "demo Trust prepared in %s\n  config:        %s\n  agency keys:   %s/<partner>.jwk (private; never commit)\n  protocols:     %s\n",
					dir, res["config"], res["keys"], res["protocols"])
			})
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", ".demo", "directory to prepare")
	initCmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "listen address written into the config")
	initCmd.Flags().BoolVar(&force, "force", false, "overwrite an existing demo (new keys)")
	initCmd.Flags().BoolVar(&ifAbsent, "if-absent", false, "do nothing if the demo is already prepared")
	addFormat(initCmd, &asJSON)
	cmd.AddCommand(initCmd, demoHintCommand(), demoRunCommand())
	return cmd
}

func keysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Agency key pairs"}
	var partner, out, alg string
	var asJSON bool
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Generate an agency key pair: a private JWK for the agency, a public JWKS for the registry",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if partner == "" {
				return &usageError{fmt.Errorf("--partner is required")}
			}
			a := jwa.SignatureAlgorithm(alg)
			if a != jwa.ES256 && a != jwa.EdDSA {
				return &usageError{fmt.Errorf("--alg must be ES256 or EdDSA")}
			}
			priv, pub, err := registry.GenerateKey(partner, a)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			privPath := filepath.Join(out, partner+".jwk")
			pubPath := filepath.Join(out, partner+".jwks.json")
			if _, err := os.Stat(privPath); err == nil {
				return fmt.Errorf("%s: refusing to overwrite a private key: %w", privPath, fs.ErrExist)
			}
			set := jwk.NewSet()
			_ = set.AddKey(pub)
			if err := writeJSONFile(privPath, priv, 0o600); err != nil {
				return err
			}
			if err := writeJSONFile(pubPath, set, 0o644); err != nil {
				return err
			}
			res := map[string]string{"partner": partner, "private_key": privPath, "public_jwks": pubPath, "kid": priv.KeyID(), "alg": alg}
			return emit(cmd, asJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "private key (keep it in the agency; never share): %s\npublic key set (for the registry's jwks_file):     %s\nkid: %s\n", privPath, pubPath, priv.KeyID())
			})
		},
	}
	gen.Flags().StringVar(&partner, "partner", "", "partner id (required)")
	gen.Flags().StringVar(&out, "out", ".", "output directory")
	gen.Flags().StringVar(&alg, "alg", "ES256", "ES256 or EdDSA")
	addFormat(gen, &asJSON)
	cmd.AddCommand(gen)
	return cmd
}

func writeJSONFile(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func protocolCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "protocol", Short: "Sign, verify and list information-sharing protocols"}
	var keyPath, partner string
	var signJSON bool
	sign := &cobra.Command{
		Use:   "sign --key KEY FILE",
		Short: "Add (or replace) one signatory's signature, keeping the others",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return &usageError{fmt.Errorf("--key is required")}
			}
			key, kidPartner, err := protocol.ReadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			if partner == "" {
				partner = kidPartner
			}
			if err := protocol.SignFile(args[0], key, partner); err != nil {
				return err
			}
			res := signedResult{File: args[0], Signer: partner, Signatures: args[0] + protocol.SignatureSuffix}
			return emit(cmd, signJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "signed %s as %s (%s)\n", res.File, res.Signer, res.Signatures)
			})
		},
	}
	sign.Flags().StringVar(&keyPath, "key", "", "the signatory's private JWK (required)")
	addFormat(sign, &signJSON)
	sign.Flags().StringVar(&partner, "partner", "", "partner id; default: from the key's kid")

	var regPath string
	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify a protocol's signatures and dates; non-zero exit with reasons if not in force",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[0]); err != nil {
				return err // named before the registry beside it
			}
			rp := regPath
			if rp == "" {
				rp = filepath.Join(filepath.Dir(args[0]), protocol.RegistryFile)
			}
			reg, err := registry.Load(cmd.Context(), rp)
			if err != nil {
				return err
			}
			st, err := protocol.EvaluateFile(args[0], reg, time.Now())
			if err != nil {
				return err
			}
			if err := printStatus(cmd, asJSON, []protocol.Status{st}); err != nil {
				return err
			}
			if !st.InForce {
				return fmt.Errorf("%w: %s is not in force", errFound, args[0])
			}
			return nil
		},
	}
	verify.Flags().StringVar(&regPath, "registry", "", "registry file; default: trust.yaml beside FILE")
	addFormat(verify, &asJSON)

	var dir string
	list := &cobra.Command{
		Use:   "list",
		Short: "List every protocol in a directory, in force or not, with reasons",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rp := regPath
			if rp == "" {
				rp = filepath.Join(dir, protocol.RegistryFile)
			}
			reg, err := registry.Load(cmd.Context(), rp)
			if err != nil {
				return err
			}
			sts, err := protocol.LoadDir(dir, reg, time.Now())
			if err != nil {
				return err
			}
			return printStatus(cmd, asJSON, sts)
		},
	}
	addFormat(list, &asJSON)
	list.Flags().StringVar(&dir, "dir", ".demo/protocols", "protocols directory")
	list.Flags().StringVar(&regPath, "registry", "", "registry file; default: DIR/trust.yaml")
	cmd.AddCommand(sign, verify, list, protocolLintCommand(), protocolWithdrawCommand())
	return cmd
}

// printStatus prints protocol statuses for people or, with asJSON, as JSON.
func printStatus(cmd *cobra.Command, asJSON bool, sts []protocol.Status) error {
	if asJSON {
		return printJSON(cmd.OutOrStdout(), sts)
	}
	return protocol.FormatStatus(cmd.OutOrStdout(), sts)
}

func tokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Developer tools for agency tokens"}
	var keyPath, sub, role, aud string
	var lifetime time.Duration
	var mintJSON bool
	mint := &cobra.Command{
		Use:   "mint --key KEY --sub PRACTITIONER --role ROLE",
		Short: "Mint a short-lived agency token (for development and the demo)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyPath == "" || sub == "" || role == "" {
				return &usageError{fmt.Errorf("--key, --sub and --role are required")}
			}
			key, partner, err := protocol.ReadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			tok, err := identity.Mint(key, identity.MintClaims{Issuer: partner, Subject: sub, Role: role, Audience: aud, IssuedAt: time.Now(), Lifetime: lifetime})
			if err != nil {
				return err
			}
			if mintJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"token": tok, "iss": partner, "sub": sub, "role": role, "aud": aud, "lifetime_s": lifetime.Seconds()})
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	mint.Flags().StringVar(&keyPath, "key", "", "the agency's private JWK")
	mint.Flags().StringVar(&sub, "sub", "", "practitioner id")
	mint.Flags().StringVar(&role, "role", "", "practitioner role")
	mint.Flags().StringVar(&aud, "aud", "trustgate", "audience (the gateway id)")
	mint.Flags().DurationVar(&lifetime, "lifetime", 2*time.Minute, "token lifetime (at most the gateway's maximum)")
	addFormat(mint, &mintJSON)
	cmd.AddCommand(mint)
	return cmd
}

// demoHint prints ready-to-paste first requests against the demo Trust.
func demoHintCommand() *cobra.Command {
	var dir, listen string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "hint",
		Short: "Print ready-to-paste first requests for the demo Trust",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			hint := demo.Hint("bin/trustgate", dir, listen)
			// One-time console sign-in links (docs/console.md), if the
			// demo's keys are there to sign them.
			type link struct {
				Label        string `json:"label"`
				Practitioner string `json:"practitioner"`
				Role         string `json:"role"`
				URL          string `json:"url"`
			}
			links := []link{}
			for _, p := range demo.ConsolePeople {
				u, err := consoleLink(filepath.Join(dir, "keys", p.Partner+".jwk"), p.Practitioner, p.Role, "trustgate", "http://"+listen, time.Hour)
				if err != nil {
					links = nil // no keys yet: no links
					break
				}
				links = append(links, link{p.Label, p.Practitioner, p.Role, u})
			}
			return emit(cmd, asJSON, map[string]any{"requests": hint, "console_links": links}, func(w io.Writer) {
				fmt.Fprint(w, hint)
				if links == nil {
					return
				}
				var lines []string
				for _, l := range links {
					lines = append(lines, fmt.Sprintf("#   %s (%s, %s):\n#   %s", l.Label, l.Practitioner, l.Role, l.URL))
				}
				fmt.Fprintf(w, "# The console, for people: open a link once the gateway listens (each signs in once,\n"+
					"# within the hour; make more with `bin/trustgate console link --key %s/keys/exley-csc.jwk --sub ig-0001`):\n%s\n\n",
					dir, strings.Join(lines, "\n"))
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".demo", "demo directory")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "gateway address")
	addFormat(cmd, &asJSON)
	return cmd
}

func devCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "dev", Short: "Development helpers", Hidden: true}
	var out string
	var hosts []string
	var asJSON bool
	certs := &cobra.Command{
		Use:   "certs --out DIR",
		Short: "Generate a development CA and server certificate (never commit them)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := devcert.Generate(out, hosts, 90*24*time.Hour, time.Now())
			if err != nil {
				return err
			}
			res := map[string]string{"ca_cert": f.CACert, "server_cert": f.ServerCert, "server_key": f.ServerKey}
			return emit(cmd, asJSON, res, func(w io.Writer) {
				fmt.Fprintf(w, "CA: %s\nserver certificate: %s\nserver key: %s (0600)\nSet tls.cert_file and tls.key_file in the config to serve HTTPS.\n", f.CACert, f.ServerCert, f.ServerKey)
			})
		},
	}
	certs.Flags().StringVar(&out, "out", "certs/dev", "output directory")
	certs.Flags().StringSliceVar(&hosts, "host", nil, "extra host names or IPs for the server certificate")
	addFormat(certs, &asJSON)
	cmd.AddCommand(certs)
	return cmd
}
