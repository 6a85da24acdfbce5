package revision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"time"

	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/policies"
	"github.com/childrens-trust/trustgate/protocols"
)

// Sources says where a revision is built from. Empty paths mean the
// embedded defaults (the demo registry and protocols, unsigned, and the
// embedded policies).
type Sources struct {
	Registry     string          `json:"registry,omitempty"` // registry file; default ProtocolsDir/trust.yaml
	ProtocolsDir string          `json:"protocols_dir,omitempty"`
	PoliciesDir  string          `json:"policies_dir,omitempty"`
	Settings     policy.Settings `json:"settings"`
}

// ErrBuild classifies a revision that could not be built.
var ErrBuild = errors.New("revision build failed")

// Build loads, verifies and compiles a complete revision at now. It does not
// publish it, and it does not run the checks a reload applies (see Load).
// Policy files that do not compile are a *policy.CompileError with located
// diagnostics.
func Build(ctx context.Context, src Sources, now time.Time, source string) (*Revision, error) {
	in, err := readInputs(ctx, src, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	return in.build(ctx, src, now, source, false)
}

// inputs are the files a revision is built from, read once.
type inputs struct {
	pol      policy.Sources
	files    []File
	samples  []Sample
	reg      *registry.Registry
	statuses []protocol.Status
	appts    []authz.Status
}

func readInputs(ctx context.Context, src Sources, now time.Time) (*inputs, error) {
	var in inputs
	var err error
	if src.PoliciesDir == "" {
		in.pol, err = policy.LoadFS(policies.FS)
	} else {
		in.pol, err = policy.LoadDir(src.PoliciesDir)
	}
	if err != nil {
		return nil, err
	}
	in.files = fileDigests(in.pol)
	if in.samples, err = loadSamples(src); err != nil {
		return nil, err
	}
	if in.reg, err = loadRegistry(ctx, src); err != nil {
		return nil, err
	}
	if in.statuses, err = loadProtocols(src, in.reg, now); err != nil {
		return nil, err
	}
	in.appts = []authz.Status{}
	if src.ProtocolsDir != "" { // the embedded defaults appoint no one
		if in.appts, err = authz.LoadDir(filepath.Join(src.ProtocolsDir, authz.Dir), in.reg, now); err != nil {
			return nil, err
		}
	}
	return &in, nil
}

func (in *inputs) build(ctx context.Context, src Sources, now time.Time, source string, checked bool) (*Revision, error) {
	if !checked {
		if err := policy.Check(in.pol); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBuild, err)
		}
	}
	data := Data(in.reg, in.statuses, src, now)
	pr, err := policy.Prepare(ctx, in.pol, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	return &Revision{
		Registry: in.reg, Protocols: in.statuses, Policy: pr, PolicyFiles: in.files, Samples: in.samples,
		Appointments: in.appts, Authz: authz.New(in.reg, in.appts),
		ActivatedAt: now, Source: source, policySrc: in.pol,
	}, nil
}

func fileDigests(src policy.Sources) []File {
	var out []File
	for _, n := range src.Files() {
		text, test := src.Modules[n], false
		if t, ok := src.Tests[n]; ok {
			text, test = t, true
		}
		sum := sha256.Sum256([]byte(text))
		out = append(out, File{Name: n, SHA256: hex.EncodeToString(sum[:]), Test: test})
	}
	return out
}

func loadRegistry(ctx context.Context, src Sources) (*registry.Registry, error) {
	path := src.Registry
	if path == "" && src.ProtocolsDir != "" {
		path = filepath.Join(src.ProtocolsDir, protocol.RegistryFile)
	}
	if path == "" {
		b, err := fs.ReadFile(protocols.FS, protocol.RegistryFile)
		if err != nil {
			return nil, err
		}
		return registry.Parse(ctx, b, ".")
	}
	return registry.Load(ctx, path)
}

func loadProtocols(src Sources, reg *registry.Registry, now time.Time) ([]protocol.Status, error) {
	if src.ProtocolsDir != "" {
		return protocol.LoadDir(src.ProtocolsDir, reg, now)
	}
	names, err := fs.Glob(protocols.FS, "*.yaml")
	if err != nil {
		return nil, err
	}
	var out []protocol.Status
	for _, n := range names {
		if n == protocol.RegistryFile {
			continue
		}
		b, err := fs.ReadFile(protocols.FS, n)
		if err != nil {
			return nil, err
		}
		out = append(out, protocol.Evaluate("embedded:"+n, b, nil, reg, now))
	}
	return out, nil
}

// Data builds the policy's data from the registry and the protocols. A
// protocol enters the data when it is in force now, or when its only
// obstacle is that its effective date has not come (it is re-evaluated as
// of that date): the policy checks the dates at each decision, so a
// protocol starts and stops being in force at the instant without a reload.
// Its expires_ns is the first instant it is no longer in force: expires, or
// the effective time of a signatory's withdrawal if that is earlier.
func Data(reg *registry.Registry, statuses []protocol.Status, src Sources, now time.Time) policy.Data {
	d := policy.Data{Partners: map[string]policy.PartnerData{}, Settings: src.Settings}
	for _, p := range reg.Partners() {
		d.Partners[p.ID] = policy.PartnerData{Type: string(p.Type), Sensitive: p.Sensitive}
	}
	for _, st := range statuses {
		p := st.Protocol
		if p == nil {
			continue
		}
		usable := st.InForce
		until := st.Until
		if !usable && now.Before(p.EffectiveFrom.Time()) && src.ProtocolsDir != "" {
			later, err := protocol.EvaluateFile(st.File, reg, p.EffectiveFrom.Time())
			usable = err == nil && later.InForce && later.Digest == st.Digest
			until = later.Until
		}
		if !usable {
			continue
		}
		d.Protocols = append(d.Protocols, protocolData(p, st.Digest, until))
	}
	sort.Slice(d.Protocols, func(i, j int) bool { return d.Protocols[i].ID < d.Protocols[j].ID })
	return d
}

func protocolData(p *protocol.Protocol, digest string, until time.Time) policy.ProtocolData {
	if until.IsZero() || p.Expires.Time().Before(until) {
		until = p.Expires.Time()
	}
	pd := policy.ProtocolData{
		ID: p.ID, Version: p.Version, Title: p.Title, Digest: digest,
		Signatories:     p.Signatories,
		EffectiveFromNS: p.EffectiveFrom.Time().UnixNano(),
		ExpiresNS:       until.UnixNano(), // expires, or the first withdrawal
		Purposes:        p.Purposes,
	}
	for _, r := range p.Rules {
		pd.Rules = append(pd.Rules, policy.RuleData{
			ID:              r.ID,
			Providers:       policy.PartiesData{Partners: r.Providers.Partners, Types: r.Providers.Types},
			Requesters:      policy.PartiesData{Partners: r.Requesters.Partners, Types: r.Requesters.Types, Roles: r.Requesters.Roles},
			Purposes:        r.Purposes,
			Categories:      r.Categories,
			Fields:          r.Fields,
			LawfulBasis:     r.LawfulBasis,
			Consent:         string(r.Consent),
			OverrideRoles:   r.OverrideRoles,
			OverrideGrounds: r.OverrideGrounds,
		})
	}
	return pd
}

// Proposal builds a revision to replay recorded decisions against (a
// what-if), never to serve. Its data holds every protocol that parses,
// lints cleanly and is signed by all its signatories - or, with
// assumeSigned, that would be in force once signed - whatever its dates
// and withdrawals: the policy compares each recorded decision's time with
// the protocol's period (expires, or the first withdrawal), so the replay
// sees each protocol in force exactly when it was or would have been.
// The policies must compile; the checks of a reload are not run.
func Proposal(ctx context.Context, src Sources, now time.Time, assumeSigned bool) (*Revision, error) {
	in, err := readInputs(ctx, src, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	if err := policy.Check(in.pol); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	d := policy.Data{Partners: map[string]policy.PartnerData{}, Settings: src.Settings}
	for _, p := range in.reg.Partners() {
		d.Partners[p.ID] = policy.PartnerData{Type: string(p.Type), Sensitive: p.Sensitive}
	}
	for _, st := range in.statuses {
		if ProposalIncludes(st, assumeSigned) {
			d.Protocols = append(d.Protocols, protocolData(st.Protocol, st.Digest, st.Until))
		}
	}
	sort.Slice(d.Protocols, func(i, j int) bool { return d.Protocols[i].ID < d.Protocols[j].ID })
	pr, err := policy.Prepare(ctx, in.pol, d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	return &Revision{
		Registry: in.reg, Protocols: in.statuses, Policy: pr, PolicyFiles: in.files, Samples: in.samples,
		Appointments: in.appts, Authz: authz.New(in.reg, in.appts),
		ActivatedAt: now, Source: "proposal", policySrc: in.pol,
	}, nil
}

// ProposalIncludes reports whether a proposal's data holds the protocol of
// st: it parsed, and nothing but its dates, its withdrawals or (with
// assumeSigned) its signatures keeps it out of force.
func ProposalIncludes(st protocol.Status, assumeSigned bool) bool {
	if st.Protocol == nil {
		return false
	}
	for _, f := range st.Findings {
		if f.Severity != protocol.SeverityError {
			continue
		}
		switch f.Kind {
		case protocol.FindingDate, protocol.FindingWithdrawn:
		case protocol.FindingUnsigned, protocol.FindingSignature:
			if !assumeSigned {
				return false
			}
		default:
			return false
		}
	}
	return true
}
