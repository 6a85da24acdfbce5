package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"gopkg.in/yaml.v3"
)

// PartnerType is the kind of agency a partner is. The vocabulary is closed.
type PartnerType string

// The partner types of a Children's Trust (Children Act 2004 s10 partners,
// their later extensions, and voluntary organisations by agreement).
const (
	LocalAuthority   PartnerType = "local_authority"
	Health           PartnerType = "health"
	GP               PartnerType = "gp"
	Police           PartnerType = "police"
	Probation        PartnerType = "probation"
	YouthOffending   PartnerType = "youth_offending"
	School           PartnerType = "school"
	Connexions       PartnerType = "connexions"
	LearningSkills   PartnerType = "learning_skills"
	DistrictCouncil  PartnerType = "district_council"
	FurtherEducation PartnerType = "further_education"
	JobcentrePlus    PartnerType = "jobcentre_plus"
	Voluntary        PartnerType = "voluntary"
)

// PartnerTypes lists every accepted partner type.
var PartnerTypes = []PartnerType{
	LocalAuthority, Health, GP, Police, Probation, YouthOffending, School,
	Connexions, LearningSkills, DistrictCouncil, FurtherEducation, JobcentrePlus, Voluntary,
}

// ValidType reports whether t is in the closed vocabulary.
func ValidType(t string) bool {
	for _, p := range PartnerTypes {
		if string(p) == t {
			return true
		}
	}
	return false
}

// Term is one entry of a vocabulary: an identifier and what it means.
type Term struct {
	ID          string `yaml:"id" json:"id"`
	Description string `yaml:"description" json:"description"`
	// Special marks special category data (UK GDPR art. 9) or criminal
	// offence data; informational, carried into decisions.
	Special bool `yaml:"special,omitempty" json:"special,omitempty"`
}

// Role is one practitioner role of the Trust's vocabulary and who may
// hold it. HeldBy names the partners and partner types whose tokens may
// assert the role (both empty: any partner). Appointed roles (ig_lead,
// auditor: roles that see across children or change the Trust's rules) are
// held only by practitioners named in a signed appointment
// (internal/authz); HeldBy still bounds which agencies may be appointed.
type Role struct {
	ID          string  `yaml:"id" json:"id"`
	Description string  `yaml:"description" json:"description"`
	HeldBy      Holders `yaml:"held_by,omitempty" json:"held_by"`
	Appointed   bool    `yaml:"appointed,omitempty" json:"appointed,omitempty"`
}

// Holders names partners by id and by type.
type Holders struct {
	Partners []string `yaml:"partners,omitempty" json:"partners,omitempty"`
	Types    []string `yaml:"types,omitempty" json:"types,omitempty"`
}

// Partner is one agency of the Trust.
type Partner struct {
	ID        string      `yaml:"id" json:"id"`
	Name      string      `yaml:"name" json:"name"`
	Type      PartnerType `yaml:"type" json:"type"`
	Sensitive bool        `yaml:"sensitive,omitempty" json:"sensitive"`
	// Endpoint is the base URL of the partner's provider service.
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// Webhook is where access notifications for this partner are delivered.
	Webhook string `yaml:"webhook,omitempty" json:"webhook,omitempty"`
	// Exactly one of JWKS (inline), JWKSFile (relative to the registry file)
	// or JWKSURI (fetched and refreshed) names the partner's public keys.
	JWKS     map[string]any `yaml:"jwks,omitempty" json:"-"`
	JWKSFile string         `yaml:"jwks_file,omitempty" json:"-"`
	JWKSURI  string         `yaml:"jwks_uri,omitempty" json:"-"`
	// OIDC is the agency's OpenID Connect provider, through which its
	// staff sign in to the console (docs/console.md); nil: none.
	OIDC *OIDC `yaml:"oidc,omitempty" json:"-"`

	keys jwk.Set
}

// OIDC names an agency's OpenID Connect provider and the console's
// registration there: a public client using the authorization code flow
// with PKCE (no client secret).
type OIDC struct {
	// Issuer is the provider's issuer URL (discovery at
	// Issuer/.well-known/openid-configuration); https, or http on loopback.
	Issuer string `yaml:"issuer"`
	// ClientID is the console's client id at that provider.
	ClientID string `yaml:"client_id"`
	// PractitionerClaim is the ID token claim that holds the
	// practitioner's id in the agency (default "sub").
	PractitionerClaim string `yaml:"practitioner_claim,omitempty"`
	// RolesClaim is the ID token claim (a string or a list of strings)
	// holding the person's roles as the agency asserts them (default
	// "roles"), as an agency system asserts a role in its tokens.
	RolesClaim string `yaml:"roles_claim,omitempty"`
}

// Trust is the registry file's document.
type Trust struct {
	ID         string    `yaml:"id"`
	Name       string    `yaml:"name"`
	Purposes   []Term    `yaml:"purposes"`
	Categories []Term    `yaml:"categories"`
	Roles      []Role    `yaml:"roles"`
	Partners   []Partner `yaml:"partners"`
	// The Trust's own public keys (exactly one of JWKS or JWKSFile, or
	// neither): the Trust board's signature on Trust-wide appointments.
	// Kept off the agencies' systems; an agency key cannot make it.
	JWKS     map[string]any `yaml:"jwks,omitempty"`
	JWKSFile string         `yaml:"jwks_file,omitempty"`
}

// Registry is a loaded, validated Trust. Safe for concurrent use.
type Registry struct {
	trust      Trust
	partners   map[string]*Partner
	purposes   map[string]Term
	categories map[string]Term
	roles      map[string]Role
	trustKeys  jwk.Set
	cache      *jwk.Cache // non-nil when any partner uses jwks_uri
}

// ErrInvalid classifies every registry validation failure.
var ErrInvalid = errors.New("invalid registry")

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{1,63}$`)

// Load reads and validates a registry file. Key files are resolved relative
// to the registry file's directory. A jwks_uri is registered with a jwk.Cache
// bound to ctx and fetched once before Load returns.
func Load(ctx context.Context, path string) (*Registry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return Parse(ctx, b, filepath.Dir(path))
}

// Parse decodes and validates a registry document; baseDir resolves jwks_file.
func Parse(ctx context.Context, doc []byte, baseDir string) (*Registry, error) {
	var t Trust
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	r := &Registry{
		trust:      t,
		partners:   map[string]*Partner{},
		purposes:   map[string]Term{},
		categories: map[string]Term{},
		roles:      map[string]Role{},
	}
	if t.ID == "" {
		return nil, fmt.Errorf("%w: id is required", ErrInvalid)
	}
	for _, v := range []struct {
		name  string
		terms []Term
		into  map[string]Term
	}{{"purposes", t.Purposes, r.purposes}, {"categories", t.Categories, r.categories}} {
		if len(v.terms) == 0 {
			return nil, fmt.Errorf("%w: %s: at least one is required", ErrInvalid, v.name)
		}
		for _, term := range v.terms {
			if !idPattern.MatchString(term.ID) {
				return nil, fmt.Errorf("%w: %s: %q is not a valid identifier", ErrInvalid, v.name, term.ID)
			}
			if _, dup := v.into[term.ID]; dup {
				return nil, fmt.Errorf("%w: %s: %q appears twice", ErrInvalid, v.name, term.ID)
			}
			v.into[term.ID] = term
		}
	}
	for i := range t.Partners {
		p := &r.trust.Partners[i]
		if err := r.addPartner(ctx, p, baseDir); err != nil {
			return nil, fmt.Errorf("%w: partner %q: %v", ErrInvalid, p.ID, err)
		}
	}
	if err := r.addRoles(t.Roles); err != nil {
		return nil, fmt.Errorf("%w: roles: %v", ErrInvalid, err)
	}
	if _, dup := r.partners[t.ID]; dup {
		return nil, fmt.Errorf("%w: partner %q has the Trust's own id", ErrInvalid, t.ID)
	}
	keys, err := keySet(ctx, nil, t.JWKS, t.JWKSFile, "", baseDir)
	if err != nil {
		return nil, fmt.Errorf("%w: the Trust's keys: %v", ErrInvalid, err)
	}
	r.trustKeys = keys
	return r, nil
}

// addRoles checks the role vocabulary: identifiers, and holders that are
// partners and partner types of the registry.
func (r *Registry) addRoles(roles []Role) error {
	if len(roles) == 0 {
		return errors.New("at least one is required")
	}
	for _, role := range roles {
		if !idPattern.MatchString(role.ID) {
			return fmt.Errorf("%q is not a valid identifier", role.ID)
		}
		if _, dup := r.roles[role.ID]; dup {
			return fmt.Errorf("%q appears twice", role.ID)
		}
		for _, p := range role.HeldBy.Partners {
			if _, ok := r.partners[p]; !ok {
				return fmt.Errorf("%s: held_by partner %q is not a partner of the Trust", role.ID, p)
			}
		}
		for _, ty := range role.HeldBy.Types {
			if !ValidType(ty) {
				return fmt.Errorf("%s: held_by type %q is not one of %v", role.ID, ty, PartnerTypes)
			}
		}
		r.roles[role.ID] = role
	}
	return nil
}

func (r *Registry) addPartner(ctx context.Context, p *Partner, baseDir string) error {
	if !idPattern.MatchString(p.ID) {
		return errors.New("id is not a valid identifier")
	}
	if _, dup := r.partners[p.ID]; dup {
		return errors.New("appears twice")
	}
	if p.Name == "" {
		return errors.New("name is required")
	}
	if !ValidType(string(p.Type)) {
		return fmt.Errorf("type %q is not one of %v", p.Type, PartnerTypes)
	}
	for _, u := range []struct{ name, v string }{{"endpoint", p.Endpoint}, {"webhook", p.Webhook}} {
		if u.v == "" {
			continue
		}
		pu, err := url.Parse(u.v)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("%s %q is not an http(s) URL", u.name, u.v)
		}
	}
	if o := p.OIDC; o != nil {
		iu, err := url.Parse(o.Issuer)
		if err != nil || iu.Host == "" || (iu.Scheme != "https" && !(iu.Scheme == "http" && isLoopbackHost(iu.Hostname()))) {
			return fmt.Errorf("oidc.issuer %q must be an https URL (http only on loopback)", o.Issuer)
		}
		if o.ClientID == "" {
			return errors.New("oidc.client_id is required")
		}
	}
	set, err := keySet(ctx, r, p.JWKS, p.JWKSFile, p.JWKSURI, baseDir)
	if err != nil {
		return err
	}
	p.keys = set
	r.partners[p.ID] = p
	return nil
}

// keySet loads one public key set from exactly one of inline (jwks), a file
// relative to baseDir, or a URI fetched and refreshed through r's cache (r
// nil: no URI allowed); none at all is an empty set.
func keySet(ctx context.Context, r *Registry, inline map[string]any, file, uri, baseDir string) (jwk.Set, error) {
	sources := 0
	for _, s := range []bool{inline != nil, file != "", uri != ""} {
		if s {
			sources++
		}
	}
	if sources > 1 {
		return nil, errors.New("give only one of jwks, jwks_file, jwks_uri")
	}
	var set jwk.Set
	var err error
	switch {
	case inline != nil:
		var raw []byte
		raw, err = jsonMarshal(inline)
		if err == nil {
			set, err = jwk.Parse(raw)
		}
	case file != "":
		f := file
		if !filepath.IsAbs(f) {
			f = filepath.Join(baseDir, f)
		}
		var raw []byte
		raw, err = os.ReadFile(f)
		if err == nil {
			set, err = jwk.Parse(raw)
		}
	case uri != "" && r != nil:
		if r.cache == nil {
			r.cache = jwk.NewCache(ctx)
		}
		if err = r.cache.Register(uri); err == nil {
			if _, err = r.cache.Refresh(ctx, uri); err == nil {
				set = jwk.NewCachedSet(r.cache, uri)
			}
		}
	case uri != "":
		err = errors.New("jwks_uri is not allowed here")
	default:
		set = jwk.NewSet() // no keys: cannot authenticate or sign
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %v", err)
	}
	if err := checkPublic(set); err != nil {
		return nil, err
	}
	return set, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// checkPublic refuses key sets that carry private material or keys without kid.
func checkPublic(set jwk.Set) error {
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		switch k.(type) {
		case jwk.ECDSAPrivateKey, jwk.OKPPrivateKey, jwk.RSAPrivateKey, jwk.SymmetricKey:
			return errors.New("keys: the registry must hold public keys only")
		}
		if k.KeyID() == "" {
			return errors.New("keys: every key needs a kid")
		}
	}
	return nil
}

// ID is the Trust's identifier.
func (r *Registry) ID() string { return r.trust.ID }

// Name is the Trust's display name.
func (r *Registry) Name() string { return r.trust.Name }

// Partner returns the partner with the given id.
func (r *Registry) Partner(id string) (*Partner, bool) {
	p, ok := r.partners[id]
	return p, ok
}

// Partners returns every partner, sorted by id.
func (r *Registry) Partners() []*Partner {
	out := make([]*Partner, 0, len(r.partners))
	for _, p := range r.partners {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Keys returns the partner's public key set (empty for a partner with none).
func (p *Partner) Keys() jwk.Set { return p.keys }

// HasPurpose, HasCategory and HasRole check the closed vocabularies.
func (r *Registry) HasPurpose(id string) bool  { _, ok := r.purposes[id]; return ok }
func (r *Registry) HasCategory(id string) bool { _, ok := r.categories[id]; return ok }
func (r *Registry) HasRole(id string) bool     { _, ok := r.roles[id]; return ok }

// Purposes, Categories and Roles return the vocabularies in file order.
func (r *Registry) Purposes() []Term   { return r.trust.Purposes }
func (r *Registry) Categories() []Term { return r.trust.Categories }
func (r *Registry) Roles() []Role      { return r.trust.Roles }

// Role returns one role's definition.
func (r *Registry) Role(id string) (Role, bool) { t, ok := r.roles[id]; return t, ok }

// MayHold reports whether the agency partner may assert role for its
// practitioners: the role is in the vocabulary and names the partner, or
// its type, among its holders (or names no holders). Whether a
// practitioner holds an appointed role is a further question
// (internal/authz).
func (r *Registry) MayHold(partner, role string) bool {
	ro, ok := r.roles[role]
	if !ok {
		return false
	}
	p, ok := r.partners[partner]
	if !ok {
		return false
	}
	return ro.HeldBy.Includes(p)
}

// Includes reports whether p is among the holders (every partner when
// both lists are empty).
func (h Holders) Includes(p *Partner) bool {
	if len(h.Partners) == 0 && len(h.Types) == 0 {
		return true
	}
	for _, id := range h.Partners {
		if id == p.ID {
			return true
		}
	}
	for _, ty := range h.Types {
		if ty == string(p.Type) {
			return true
		}
	}
	return false
}

// SignerKeys returns the public keys of a signer of Trust documents: a
// partner's keys, or, for the Trust's own id, the Trust's keys.
func (r *Registry) SignerKeys(id string) (jwk.Set, bool) {
	if id == r.trust.ID {
		return r.trustKeys, true
	}
	p, ok := r.partners[id]
	if !ok {
		return nil, false
	}
	return p.keys, true
}

// Category returns one category's definition.
func (r *Registry) Category(id string) (Term, bool) { t, ok := r.categories[id]; return t, ok }
