// Package fetch is the gateway's client of provider agencies: once a share
// is allowed it signs a decision token (provider.TokenClaims) with the
// gateway's key, fetches the child's record from the provider's endpoint
// and checks the answer before anything is passed on.
//
// What it promises:
//
//   - Every failure is an *Error naming the provider and a Reason (timeout,
//     unreachable, bad status, malformed, too large, a record for another
//     child, circuit open, busy, ...); the server maps it to 502/503/504
//     exactly once. No partial record is ever returned with an error.
//   - Bounded: one deadline per fetch (Options.Timeout), a response size
//     limit, no redirects, https verified against the configured CA (plain
//     http only to loopback).
//   - Isolation: each provider has its own bound on fetches in flight and
//     its own circuit breaker (opens after BreakerFailures consecutive
//     failures, fails fast for BreakerCooldown, then lets one probe
//     through), so a provider that is down or slow costs other providers
//     nothing.
//   - Token times (iat, exp) are on the wall clock (Options.Now), because
//     the provider checks them on its own.
package fetch
