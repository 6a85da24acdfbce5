// Package devcert generates a development CA and a server certificate for
// running the gateway (and the demo providers) over TLS on this machine.
// It is for development only: production certificates come from the
// Trust's PKI. The private keys it writes are mode 0600 and never committed.
package devcert
