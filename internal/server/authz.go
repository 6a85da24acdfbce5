package server

import (
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
