package revision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"time"

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
	Registry     string // registry file; default ProtocolsDir/trust.yaml
	ProtocolsDir string
	PoliciesDir  string
	Settings     policy.Settings
}

// ErrBuild classifies a revision that could not be built.
var ErrBuild = errors.New("revision build failed")

// Build loads, verifies and compiles a complete revision at now. It does not
// publish it.
func Build(ctx context.Context, src Sources, now time.Time, source string) (*Revision, error) {
	reg, err := loadRegistry(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	statuses, err := loadProtocols(src, reg, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	var pol policy.Sources
	if src.PoliciesDir == "" {
		pol, err = policy.LoadFS(policies.FS)
	} else {
		pol, err = policy.LoadDir(src.PoliciesDir)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	data := Data(reg, statuses, src, now)
	pr, err := policy.Prepare(ctx, pol, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuild, err)
	}
	return &Revision{Registry: reg, Protocols: statuses, Policy: pr, ActivatedAt: now, Source: source}, nil
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
		if !usable && now.Before(p.EffectiveFrom.Time()) && src.ProtocolsDir != "" {
			later, err := protocol.EvaluateFile(st.File, reg, p.EffectiveFrom.Time())
			usable = err == nil && later.InForce && later.Digest == st.Digest
		}
		if !usable {
			continue
		}
		d.Protocols = append(d.Protocols, protocolData(p, st.Digest))
	}
	sort.Slice(d.Protocols, func(i, j int) bool { return d.Protocols[i].ID < d.Protocols[j].ID })
	return d
}

func protocolData(p *protocol.Protocol, digest string) policy.ProtocolData {
	pd := policy.ProtocolData{
		ID: p.ID, Version: p.Version, Title: p.Title, Digest: digest,
		Signatories:     p.Signatories,
		EffectiveFromNS: p.EffectiveFrom.Time().UnixNano(),
		ExpiresNS:       p.Expires.Time().UnixNano(),
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
