// Package bench holds the end-to-end load benchmarks run by `make bench`
// (build tag "bench"; not part of `make test`). Each drives a real server
// over loopback with concurrent clients for a fixed time and compares it,
// in the same run, with a peer: OPA's own server evaluating the same
// policy, data and input. Figures go into docs/performance.md.
package bench
