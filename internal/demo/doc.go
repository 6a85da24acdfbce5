// Package demo prepares the demo Trust the way real partners would: every
// demo partner gets its own key pair, the registry names each partner's
// public key set, every signatory signs the demo protocols, and a config
// file ties it together for `trustgate serve --config`. No private key is
// ever committed: they are generated here, under the directory given.
//
// Layout of DIR (docs/architecture.md repeats it):
//
//	DIR/trustgate.yaml                 config for `trustgate serve --config`
//	DIR/keys/<partner>.jwk             each agency's PRIVATE signing key (0600)
//	DIR/protocols/trust.yaml           the registry, with jwks_file per partner
//	DIR/protocols/keys/<partner>.jwks.json  each agency's public key set
//	DIR/protocols/<protocol>.yaml      the demo protocols
//	DIR/protocols/<protocol>.yaml.jws  their signatures (JWS JSON, detached)
//	DIR/records/<partner>.json         the demo providers' synthetic records
//	DIR/data/                          the gateway's data (audit log, keys)
package demo
