// Package console is the gateway's web console for people: IG leads,
// auditors and lead professionals (docs/console.md).
//
// It owns the pages under /console/ (html/template, assets embedded in the
// binary, nothing from another origin), people's sign-in (each agency's
// OpenID Connect provider named in the registry, authorization code with
// PKCE; or, for the demo Trust, a one-time development link signed with an
// agency's key) and their sessions (in memory; HttpOnly, SameSite=Lax,
// Secure off loopback, a CSRF token on every form, idle and absolute
// timeouts).
//
// It promises to add no privilege: every page is drawn from, and every
// action is, a call of the gateway's own /v1 handler, made in-process with
// the signed-in person's principal (server.WithPrincipal): the same role
// checks, validation and audit entry as an agency system's request. The
// only things it computes itself are pure: a draft protocol's lint
// against the serving registry, and the charts. A signed-in person's
// sign-in is itself audited.
package console
