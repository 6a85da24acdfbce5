package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/identity"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// authorize decides, under the request's revision, whether the verified
// caller may act in the role its token asserts (internal/authz): a role
// its agency may hold and, for an appointed role, an appointment in force
// naming exactly this practitioner. A refusal is a 401 (the token's
// assertion is not true), audited as an authentication failure.
func authorize(rev *revision.Revision, c *identity.Claims, at time.Time) (authz.Grant, error) {
	m := rev.Authz
	if m == nil { // a revision built without appointments appoints no one
		m = authz.New(rev.Registry, nil)
	}
	return m.Authorize(c.Partner, c.Practitioner, c.Role, at)
}

// requireRole refuses callers whose role is not one of roles. Appointed
// roles reach here only with an appointment in force (authorize).
func requireRole(x *exchange, what string, roles ...string) error {
	x.entry.Kind = audit.KindRejected
	if !slices.Contains(roles, x.claims.Role) {
		return forbidden(fmt.Sprintf("role %s may not %s: only %s", x.claims.Role, what, strings.Join(roles, ", ")))
	}
	x.entry.Kind = audit.KindAccess
	return nil
}

// requireTrustWide refuses a caller whose appointment is scoped to their
// own agency: what is asked reaches the whole Trust (the whole log, the
// Trust's rules).
func requireTrustWide(x *exchange, what string) error {
	if x.grant.TrustWide() {
		return nil
	}
	x.entry.Kind = audit.KindRejected
	return &apiError{Status: http.StatusForbidden, Code: "forbidden", Reason: fmt.Sprintf("%s of %s may not %s: it needs a Trust-wide appointment (this one is scoped to %s)", x.claims.Practitioner, x.claims.Partner, what, x.claims.Partner), Kind: audit.KindRejected}
}

// Involvement says whether an agency is involved with a child (by
// pseudonym): it has a lawful basis to know about them. Only a
// practitioner of an involved agency may be the child's lead professional,
// and only an involved agency is told of disclosures as the lead's. The
// involvement index implements it; without one (Deps.Involvement nil) the
// server answers from the protocols in force (protocolInvolvement).
type Involvement interface {
	Involved(ctx context.Context, rev *revision.Revision, partner, subject string, at time.Time) (bool, error)
}

// protocolInvolvement: an agency is involved with every child when an
// in-force protocol has a rule under which it receives.
type protocolInvolvement struct{}

func (protocolInvolvement) Involved(_ context.Context, rev *revision.Revision, partner, _ string, at time.Time) (bool, error) {
	return authz.ReceivesUnderProtocols(rev.Protocols, rev.Registry, partner, at), nil
}

var _ Involvement = protocolInvolvement{}

func (s *Server) involvement() Involvement {
	if s.deps.Involvement != nil {
		return s.deps.Involvement
	}
	return protocolInvolvement{}
}
