package server

import (
	"context"
	"fmt"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/identity"
)

// principalKey carries an in-process caller's identity (WithPrincipal).
type principalKey struct{}

// WithPrincipal returns a context under which a /v1 request is answered
// as the given agency practitioner, without a bearer token. Only Go code
// in this process can set it: the console (internal/console) calls the
// gateway's own /v1 handler with the principal of a signed-in person's
// session, so the person's requests pass the same role checks, the same
// validation and leave the same audit entry as an agency system's. The
// claims' JTI is written as the entry's token id (the console names the
// session there); the partner and the role are checked against the
// revision's registry as a token's would be.
func WithPrincipal(ctx context.Context, c identity.Claims) context.Context {
	return context.WithValue(ctx, principalKey{}, &c)
}

// principal is the in-process caller of a request, if any.
func principal(ctx context.Context) (*identity.Claims, bool) {
	c, ok := ctx.Value(principalKey{}).(*identity.Claims)
	return c, ok
}

// checkPrincipal refuses an in-process principal the registry of the
// request's revision does not know, as the token verifier would.
func checkPrincipal(x *exchange, c *identity.Claims) error {
	if _, ok := x.rev.Registry.Partner(c.Partner); !ok {
		x.entry.Kind = audit.KindAuthFailure
		return &identity.AuthError{Code: identity.CodeUnknownIssuer, Message: fmt.Sprintf("partner %q is not in the registry", c.Partner), Issuer: c.Partner, Subject: c.Practitioner}
	}
	if !x.rev.Registry.HasRole(c.Role) {
		x.entry.Kind = audit.KindAuthFailure
		return &identity.AuthError{Code: identity.CodeUnknownRole, Message: fmt.Sprintf("role %q is not a role of the Trust", c.Role), Issuer: c.Partner, Subject: c.Practitioner}
	}
	if !x.rev.Registry.MayHold(c.Partner, c.Role) {
		x.entry.Kind = audit.KindAuthFailure
		return &identity.AuthError{Code: identity.CodeRoleNotHeld, Message: fmt.Sprintf("partner %q may not assert role %q (the registry's held_by)", c.Partner, c.Role), Issuer: c.Partner, Subject: c.Practitioner}
	}
	return nil
}
