package revision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
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
			d.Lapsed = append(d.Lapsed, lapsedData(st))
			continue
		}
		st.Until = until
		d.Protocols = append(d.Protocols, protocolData(st))
	}
	finishData(&d)
	return d
}

// finishData sorts the protocols by id and drops the lapsed ones that
// another version in the data supersedes (the reasons name that one).
func finishData(d *policy.Data) {
	sort.Slice(d.Protocols, func(i, j int) bool { return d.Protocols[i].ID < d.Protocols[j].ID })
	ids := map[string]bool{}
	for _, p := range d.Protocols {
		ids[p.ID] = true
	}
	d.Lapsed = slices.DeleteFunc(d.Lapsed, func(p policy.ProtocolData) bool { return ids[p.ID] })
	sort.SliceStable(d.Lapsed, func(i, j int) bool { return d.Lapsed[i].ID < d.Lapsed[j].ID })
}

// lapsedData is a protocol that is not in force, with why (the first of
// its findings that keeps it out, in the order: a failed check, a bad
// signature, a missing one, a withdrawal, its dates).
func lapsedData(st protocol.Status) policy.ProtocolData {
	pd := protocolData(st)
	rank := map[protocol.FindingKind]int{
		protocol.FindingInvalid: 0, protocol.FindingLint: 0, protocol.FindingDuplicate: 0, protocol.FindingWithdrawal: 0,
		protocol.FindingSignature: 1, protocol.FindingUnsigned: 2, protocol.FindingWithdrawn: 3, protocol.FindingDate: 4,
	}
	var pick *protocol.Finding
	for i := range st.Findings {
		f := &st.Findings[i]
		if f.Severity != protocol.SeverityError {
			continue
		}
		if r, ok := rank[f.Kind]; ok && (pick == nil || r < rank[pick.Kind]) {
			pick = f
		}
	}
	c := policy.Cause{Code: "protocol_invalid", Words: "it fails the checks a protocol must pass"}
	if pick != nil {
		c.Words = pick.Message
		switch pick.Kind {
		case protocol.FindingSignature:
			c.Code = "signature_invalid"
			if pick.Partner != "" {
				c.Words = "the signature of " + pick.Partner + " does not verify (" + pick.Message + ")"
			}
		case protocol.FindingUnsigned:
			c.Code = "signature_missing"
			if pick.Partner != "" {
				c.Words = "the signature of " + pick.Partner + " is missing"
			} else {
				c.Words = "it has no signatures"
			}
		case protocol.FindingWithdrawn:
			c.Code = "protocol_withdrawn"
		case protocol.FindingDate:
			c.Code = "protocol_expired"
			if pick.Field == "effective_from" {
				c.Code = "protocol_not_yet_in_force"
			}
		}
	}
	pd.Cause = &c
	return pd
}

// protocolData is the policy's view of st's protocol, in force from its
// effective date until st.Until (expires, or the first withdrawal).
func protocolData(st protocol.Status) policy.ProtocolData {
	p, until := st.Protocol, st.Until
	if until.IsZero() || p.Expires.Time().Before(until) {
		until = p.Expires.Time()
	}
	ends := policy.Cause{Code: "protocol_expired", Words: "expired on " + p.Expires.String()}
	if until.Before(p.Expires.Time()) {
		for _, w := range st.Withdrawals {
			if w.OK && w.Claims.Effective.Equal(until) && p.IsSignatory(w.Partner) {
				ends = policy.Cause{Code: "protocol_withdrawn", Words: "withdrawn by " + w.Partner + " from " + protocol.NewDate(until).String()}
				break
			}
		}
	}
	pd := policy.ProtocolData{
		ID: p.ID, Version: p.Version, Title: p.Title, Digest: st.Digest,
		Signatories:     p.Signatories,
		EffectiveFromNS: p.EffectiveFrom.Time().UnixNano(),
		ExpiresNS:       until.UnixNano(), // expires, or the first withdrawal
		Purposes:        p.Purposes,
		EffectiveFrom:   p.EffectiveFrom.String(),
		Ends:            ends,
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
		switch {
		case ProposalIncludes(st, assumeSigned):
			d.Protocols = append(d.Protocols, protocolData(st))
		case st.Protocol != nil:
			d.Lapsed = append(d.Lapsed, lapsedData(st))
		}
	}
	finishData(&d)
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
