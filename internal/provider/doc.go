// Package provider is the contract between the gateway and the agencies
// that hold records, and a reference implementation of the agency side.
//
// The contract (docs/providers.md is the agency-facing version):
//
//   - The decision token. When a share is allowed the gateway fetches the
//     record with a short-lived JWT it signs with its own key: TokenClaims,
//     typ TokenType, aud the provider's partner id, sub the child's NHS
//     number, the categories and fields the decision allows, the protocol
//     rule, exp at most MaxTokenLifetime after iat, a single-use jti.
//     TokenVerifier checks one against the gateway's published key set
//     (GatewayKeys).
//   - The record. The provider answers GET /v1/record with a Record: the
//     child's NHS number and, per data category, an object of named
//     fields. Minimise cuts a Record down to what a decision allows; both
//     the gateway and the reference provider apply it.
//   - The notification. Every disclosure is reported to the providing
//     agency (and to the child's lead professional) as a Notification,
//     pushed to the partner's webhook as a JWT of typ NotificationType
//     signed by the gateway (VerifyNotification checks one), or read with
//     GET /v1/notifications on the gateway.
//
// The reference provider (Server) serves synthetic records from a fixture
// file (LoadRecords), verifies every decision token (signature against the
// gateway's key set, audience, expiry, single use) before it looks at the
// child, and returns only what the token allows. It also receives the
// gateway's notifications. Every answer about a child it does not hold is
// given only after the token has been verified, so a caller without a
// valid token learns nothing about who is known to the agency.
package provider
