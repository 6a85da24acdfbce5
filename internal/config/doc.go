// Package config owns the gateway's configuration: one YAML file, then the
// embedded defaults for anything it leaves out, then overrides from flags,
// then validation. Unknown keys are rejected. Secrets never live here: the
// config names where a secret is (a file, Vault), never the secret itself.
package config
