package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// The environment of every command that calls a running gateway, as
// VAULT_ADDR and VAULT_TOKEN are Vault's: flags win over these.
const (
	envAddr  = "TRUSTGATE_ADDR"  // the gateway's base URL
	envToken = "TRUSTGATE_TOKEN" // a bearer token (single use: prefer a key)
	envKey   = "TRUSTGATE_KEY"   // an agency's private JWK file, to mint a fresh token per call
	envSub   = "TRUSTGATE_SUB"   // with a key: the practitioner id
	envRole  = "TRUSTGATE_ROLE"  // with a key: the role
	envCA    = "TRUSTGATE_CACERT"
)

// gatewayFlags are the flags of a command that calls the gateway.
type gatewayFlags struct {
	url, token, tokenFile, ca string
	key, sub, role, aud       string
	timeout                   time.Duration
}

// add registers the flags; role is the default role of a minted token,
// timeout the default of --timeout.
func (g *gatewayFlags) add(cmd *cobra.Command, role string, timeout time.Duration) {
	cmd.Flags().StringVar(&g.url, "gateway", cmp.Or(os.Getenv(envAddr), "http://127.0.0.1:8080"), "the gateway's base URL ($"+envAddr+")")
	cmd.Flags().StringVar(&g.token, "token", "", "a bearer token (single use; default $"+envToken+"; prefer --key)")
	cmd.Flags().StringVar(&g.tokenFile, "token-file", "", "a file holding the bearer token")
	cmd.Flags().StringVar(&g.key, "key", os.Getenv(envKey), "the agency's private JWK, to mint a fresh single-use token per call ($"+envKey+")")
	cmd.Flags().StringVar(&g.sub, "sub", os.Getenv(envSub), "with --key: the practitioner id ($"+envSub+")")
	cmd.Flags().StringVar(&g.role, "role", cmp.Or(os.Getenv(envRole), role), "with --key: the role ($"+envRole+")")
	cmd.Flags().StringVar(&g.aud, "aud", "trustgate", "with --key: the audience (the gateway id)")
	cmd.Flags().StringVar(&g.ca, "ca", os.Getenv(envCA), "CA certificate (PEM) for an https gateway with a private CA ($"+envCA+")")
	addTimeout(cmd, &g.timeout, timeout)
}

// bearer is the token of one call: --token or --token-file as given, else
// one minted from --key ($TRUSTGATE_KEY), else $TRUSTGATE_TOKEN.
func (g *gatewayFlags) bearer() (string, error) {
	switch {
	case g.token != "":
		return g.token, nil
	case g.tokenFile != "":
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	case g.key != "":
		if g.sub == "" {
			return "", &usageError{errors.New("--key needs --sub: the practitioner id")}
		}
		if g.role == "" {
			return "", &usageError{errors.New("--key needs --role")}
		}
		key, partner, err := protocol.ReadPrivateKey(g.key)
		if err != nil {
			return "", err
		}
		return identity.Mint(key, identity.MintClaims{Issuer: partner, Subject: g.sub, Role: g.role, Audience: g.aud, IssuedAt: time.Now(), Lifetime: time.Minute})
	case os.Getenv(envToken) != "":
		return os.Getenv(envToken), nil
	}
	return "", &usageError{errors.New("a token is required (tokens are single-use): --key and --sub to mint one per call ($" + envKey + ", $" + envSub + "), or --token-file, --token or $" + envToken)}
}

func (g *gatewayFlags) client() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if g.ca != "" {
		pem, err := os.ReadFile(g.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", g.ca)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: g.timeout}, nil // --timeout: the whole call, answer included
}

// do sends one request with a fresh bearer token and returns the response
// whatever its status.
func (g *gatewayFlags) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	tok, err := g.bearer()
	if err != nil {
		return nil, err
	}
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(g.url, "/")+path, rd)
	if err != nil {
		return nil, &usageError{err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.Do(req)
}

// get calls the gateway and returns the response for a 200; any other
// status is a failed check (exit 1) carrying the gateway's message.
func (g *gatewayFlags) get(ctx context.Context, path string) (*http.Response, error) {
	resp, err := g.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, gatewayError(resp, b)
	}
	return resp, nil
}

// gatewayError is an answer other than 2xx, as a failed check (exit 1).
func gatewayError(resp *http.Response, body []byte) error {
	var eb struct {
		Error struct {
			Code, Message string
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
		return fmt.Errorf("%w: gateway answered %s: %s (%s)", errFound, resp.Status, eb.Error.Message, eb.Error.Code)
	}
	return fmt.Errorf("%w: gateway answered %s", errFound, resp.Status)
}

// call sends one request and prints the answer: the gateway's JSON as it
// came (--format json) or indented (text). A status other than 2xx is a
// failed check (exit 1), after the answer is printed.
func (g *gatewayFlags) call(cmd *cobra.Command, method, path string, body []byte, asJSON bool) error {
	resp, err := g.do(cmd.Context(), method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var pretty bytes.Buffer
	if !asJSON && json.Indent(&pretty, raw, "", "  ") == nil {
		raw = append(pretty.Bytes(), '\n')
	}
	if _, err := out.Write(raw); err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return gatewayError(resp, raw)
	}
	return nil
}

// readBody reads a request body argument: inline JSON, @FILE, or - for
// standard input.
func readBody(cmd *cobra.Command, arg string) ([]byte, error) {
	switch {
	case arg == "-":
		return io.ReadAll(io.LimitReader(cmd.InOrStdin(), 4<<20))
	case strings.HasPrefix(arg, "@"):
		return os.ReadFile(arg[1:])
	default:
		if !json.Valid([]byte(arg)) {
			return nil, &usageError{fmt.Errorf("BODY is not JSON (give inline JSON, @FILE or -)")}
		}
		return []byte(arg), nil
	}
}

// gatewayCommands are the commands that call a running gateway's
// people-facing endpoints, and the generic `api`.
func gatewayCommands() []*cobra.Command {
	return []*cobra.Command{apiCommand(), reviewsCommand(), consentsCommand()}
}

func apiCommand() *cobra.Command {
	var g gatewayFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "api METHOD PATH [BODY]",
		Short: "Call any gateway endpoint with a fresh token per call (BODY: JSON, @FILE or -)",
		Long: `Call one endpoint of a running gateway (docs/api.md) and print its answer.
Each call mints a fresh single-use token from --key (or $TRUSTGATE_KEY),
--sub and --role. Exit 0 on a 2xx answer, 1 on any other.

  trustgate api GET /v1/policies --key .demo/keys/exley-csc.jwk --sub sw-0042 --role social_worker`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || len(args) > 3 {
				return &usageError{fmt.Errorf("api needs METHOD PATH [BODY], got %d argument(s)", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			method := strings.ToUpper(args[0])
			switch method {
			case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
			default:
				return &usageError{fmt.Errorf("METHOD %q is not one of GET, POST, PUT, DELETE, PATCH", args[0])}
			}
			if !strings.HasPrefix(args[1], "/") {
				return &usageError{fmt.Errorf("PATH %q must start with /", args[1])}
			}
			var body []byte
			if len(args) == 3 {
				b, err := readBody(cmd, args[2])
				if err != nil {
					return err
				}
				body = b
			}
			return g.call(cmd, method, args[1], body, asJSON)
		},
	}
	g.add(cmd, "", time.Minute)
	addFormat(cmd, &asJSON)
	return cmd
}

func reviewsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "reviews", Short: "The IG review queue of override decisions (role ig_lead)"}
	var g gatewayFlags
	var asJSON bool
	var status string
	list := &cobra.Command{
		Use:   "list [--status open|overdue|closed]",
		Short: "The override reviews that concern your agency",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/reviews"
			if status != "" {
				path += "?status=" + url.QueryEscape(status)
			}
			return g.call(cmd, http.MethodGet, path, nil, asJSON)
		},
	}
	list.Flags().StringVar(&status, "status", "", "open, overdue or closed")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "One review",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(cmd, http.MethodGet, "/v1/reviews/"+url.PathEscape(args[0]), nil, asJSON)
		},
	}
	var outcome, note string
	closeCmd := &cobra.Command{
		Use:   "close ID --outcome upheld|not_upheld --note TEXT",
		Short: "Record a review's outcome",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if outcome == "" || note == "" {
				return &usageError{errors.New("--outcome and --note are required")}
			}
			body, _ := json.Marshal(map[string]string{"outcome": outcome, "note": note})
			return g.call(cmd, http.MethodPost, "/v1/reviews/"+url.PathEscape(args[0]), body, asJSON)
		},
	}
	closeCmd.Flags().StringVar(&outcome, "outcome", "", "upheld or not_upheld")
	closeCmd.Flags().StringVar(&note, "note", "", "the reviewer's note")
	summary := &cobra.Command{
		Use:   "summary",
		Short: "Counts of open, overdue and closed reviews",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(cmd, http.MethodGet, "/v1/reviews/summary", nil, asJSON)
		},
	}
	for _, c := range []*cobra.Command{list, show, closeCmd, summary} {
		g.add(c, "ig_lead", time.Minute)
		addFormat(c, &asJSON)
		cmd.AddCommand(c)
	}
	return cmd
}

func consentsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "consents", Short: "Record, withdraw and list a child's consents (docs/consent.md)"}
	var g gatewayFlags
	var asJSON bool
	list := &cobra.Command{
		Use:   "list NHS",
		Short: "The child's consent history with derived statuses",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(cmd, http.MethodGet, "/v1/subjects/"+url.PathEscape(args[0])+"/consents", nil, asJSON)
		},
	}
	record := &cobra.Command{
		Use:   "record BODY",
		Short: "Record a consent or refusal (BODY: the JSON of POST /v1/consents, @FILE or -)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := readBody(cmd, args[0])
			if err != nil {
				return err
			}
			return g.call(cmd, http.MethodPost, "/v1/consents", body, asJSON)
		},
	}
	var by, obtained, evidence string
	withdraw := &cobra.Command{
		Use:   "withdraw ID --by WHO --obtained HOW",
		Short: "Record a consent's withdrawal",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if by == "" || obtained == "" {
				return &usageError{errors.New("--by and --obtained are required")}
			}
			m := map[string]string{"withdrawn_by": by, "obtained": obtained}
			if evidence != "" {
				m["evidence_ref"] = evidence
			}
			body, _ := json.Marshal(m)
			return g.call(cmd, http.MethodPost, "/v1/consents/"+url.PathEscape(args[0])+"/withdraw", body, asJSON)
		},
	}
	withdraw.Flags().StringVar(&by, "by", "", "who withdrew (self, parent, carer, guardian)")
	withdraw.Flags().StringVar(&obtained, "obtained", "", "how the withdrawal was obtained (in_person, phone, written, …)")
	withdraw.Flags().StringVar(&evidence, "evidence-ref", "", "a reference to the evidence in your own records")
	for _, c := range []*cobra.Command{list, record, withdraw} {
		g.add(c, "", time.Minute)
		addFormat(c, &asJSON)
		cmd.AddCommand(c)
	}
	return cmd
}

// auditEntriesCommand and auditStatsCommand query a running gateway's log
// (GET /v1/audit/entries and /v1/audit/stats).
func auditEntriesCommand() *cobra.Command {
	return gatewayQueryCommand("entries [--subject NHS] [--requester ID] [--kind K] [--from T] [--to T] [--limit N] [--cursor C]",
		"Query a running gateway's audit log, newest first (role auditor)", "/v1/audit/entries",
		"subject", "requester", "practitioner", "provider", "purpose", "protocol", "kind", "from", "to", "limit", "cursor")
}

func auditStatsCommand() *cobra.Command {
	return gatewayQueryCommand("stats [--from T] [--to T] [--by partner|purpose|decision|protocol|day]",
		"Shares, denials, overrides and overdue reviews from a running gateway (auditor, ig_lead)", "/v1/audit/stats",
		"from", "to", "by")
}

// gatewayQueryCommand is a command that GETs path (as an auditor by
// default) with a query parameter per flag given.
func gatewayQueryCommand(use, short, path string, params ...string) *cobra.Command {
	var g gatewayFlags
	var asJSON bool
	filters := map[string]*string{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(cmd, http.MethodGet, path+query(filters), nil, asJSON)
		},
	}
	for _, f := range params {
		filters[f] = cmd.Flags().String(f, "", "query parameter "+f)
	}
	g.add(cmd, "auditor", time.Minute)
	addFormat(cmd, &asJSON)
	return cmd
}

// query encodes the flags that were given as a query string.
func query(filters map[string]*string) string {
	v := url.Values{}
	for k, p := range filters {
		if *p != "" {
			v.Set(k, *p)
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}
