package demo

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"gopkg.in/yaml.v3"

	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/protocols"
)

// Withheld lists signatures the demo deliberately does not make, so that
// the demo shows a protocol that is not in force and why.
var Withheld = map[string][]string{"isp-education-welfare": {"exley-district"}}

// WitnessName is the demo witness's name, and WitnessKeyFile its private
// key (signed-note form) under the demo's keys directory: the demo Trust
// collects its cosignatures of the checkpoint notes (docs/auditing.md §5b).
const (
	WitnessName    = "witness.exley.example/demo"
	WitnessKeyFile = "demo-witness.note.key"
)

// ErrExists is returned when DIR already holds a prepared demo.
var ErrExists = errors.New("demo already prepared")

// Options tune Init.
type Options struct {
	Listen string // default 127.0.0.1:8080
	Force  bool   // overwrite an existing demo
}

// Init prepares the demo Trust under dir.
func Init(dir string, o Options) error {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	cfgPath := filepath.Join(dir, "trustgate.yaml")
	if _, err := os.Stat(cfgPath); err == nil && !o.Force {
		return fmt.Errorf("%w in %s (use --force to start again)", ErrExists, dir)
	}
	keysDir := filepath.Join(dir, "keys")
	protoDir := filepath.Join(dir, "protocols")
	pubDir := filepath.Join(protoDir, "keys")
	for _, d := range []string{dir, keysDir, protoDir, pubDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	regDoc, err := fs.ReadFile(protocols.FS, protocol.RegistryFile)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(regDoc, &root); err != nil {
		return fmt.Errorf("demo: registry: %w", err)
	}
	partners := mapValue(root.Content[0], "partners")
	if partners == nil {
		return errors.New("demo: registry has no partners")
	}
	privs := map[string]jwk.Key{}
	for _, pn := range partners.Content {
		id := mapValue(pn, "id").Value
		priv, pub, err := registry.GenerateKey(id, jwa.ES256)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		privs[id] = priv
		if err := writeJSON(filepath.Join(keysDir, id+".jwk"), priv, 0o600); err != nil {
			return err
		}
		set := jwk.NewSet()
		_ = set.AddKey(pub)
		if err := writeJSON(filepath.Join(pubDir, id+".jwks.json"), set, 0o644); err != nil {
			return err
		}
		pn.Style = 0 // block style, so the added key reads well
		pn.Content = append(pn.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: "jwks_file"},
			&yaml.Node{Kind: yaml.ScalarNode, Value: "keys/" + id + ".jwks.json"})
	}
	// The Trust's own key: it signs Trust-wide appointments beside the
	// appointing partner. No agency system holds it.
	trustID := mapValue(root.Content[0], "id").Value
	trustPriv, trustPub, err := registry.GenerateKey(trustID, jwa.ES256)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := writeJSON(filepath.Join(keysDir, trustID+".jwk"), trustPriv, 0o600); err != nil {
		return err
	}
	trustSet := jwk.NewSet()
	_ = trustSet.AddKey(trustPub)
	if err := writeJSON(filepath.Join(pubDir, trustID+".jwks.json"), trustSet, 0o644); err != nil {
		return err
	}
	root.Content[0].Content = append(root.Content[0].Content,
		&yaml.Node{Kind: yaml.ScalarNode, Value: "jwks_file"},
		&yaml.Node{Kind: yaml.ScalarNode, Value: "keys/" + trustID + ".jwks.json"})
	privs[trustID] = trustPriv
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return fmt.Errorf("demo: registry: %w", err)
	}
	if err := os.WriteFile(filepath.Join(protoDir, protocol.RegistryFile), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	names, _ := fs.Glob(protocols.FS, "*.yaml")
	for _, n := range names {
		if n == protocol.RegistryFile {
			continue
		}
		doc, _ := fs.ReadFile(protocols.FS, n)
		path := filepath.Join(protoDir, n)
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		_ = os.Remove(path + ".jws")
		p, err := protocol.Parse(doc)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", n, err)
		}
		for _, s := range p.Signatories {
			if contains(Withheld[p.ID], s) {
				continue
			}
			key, ok := privs[s]
			if !ok {
				return fmt.Errorf("demo: %s: signatory %s is not a demo partner", n, s)
			}
			if err := protocol.SignFile(path, key, s); err != nil {
				return fmt.Errorf("demo: sign %s as %s: %w", n, s, err)
			}
		}
	}
	if err := signAppointments(filepath.Join(protoDir, authz.Dir), privs); err != nil {
		return err
	}
	if err := writeRecords(RecordsDir(dir)); err != nil {
		return err
	}
	witness, err := writeWitnessKey(filepath.Join(keysDir, WitnessKeyFile))
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`# trustgate demo configuration, written by 'trustgate demo init'.
# Paths are relative to this file. See docs/architecture.md.
gateway_id: trustgate
listen: %s
data_dir: data
protocols_dir: protocols
keys:
  backend: local
# The checkpoint notes' witnesses (docs/auditing.md §5b): the demo witness,
# whose private key is keys/%s.
audit:
  witnesses:
    - %s
log:
  level: info
# Prometheus metrics apart from the API; port 0: a free port, logged at
# start-up ("metrics listening"). A real gateway names a fixed one.
metrics:
  listen: 127.0.0.1:0
# The web console (docs/console.md): the demo signs people in with
# one-time links made by 'trustgate console link' (never in production).
console:
  dev_links: true
`, o.Listen, WitnessKeyFile, witness)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// writeWitnessKey makes the demo witness's Ed25519 key, writes its
// private half to path (0600) and returns its cosignature/v1 verifier key.
func writeWitnessKey(path string) (string, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, WitnessName)
	if err != nil {
		return "", fmt.Errorf("demo: witness key: %w", err)
	}
	if err := os.WriteFile(path, []byte(skey+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	cvkey, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		return "", fmt.Errorf("demo: witness key: %w", err)
	}
	return cvkey, nil
}

// signAppointments writes the demo appointments into dir, each signed by
// its partner and, for scope trust, by the Trust.
func signAppointments(dir string, privs map[string]jwk.Key) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	names, _ := fs.Glob(protocols.FS, authz.Dir+"/*.yaml")
	for _, n := range names {
		doc, _ := fs.ReadFile(protocols.FS, n)
		path := filepath.Join(dir, filepath.Base(n))
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		_ = os.Remove(path + protocol.SignatureSuffix)
		a, err := authz.Parse(doc)
		if err != nil {
			return fmt.Errorf("demo: %s: %w", n, err)
		}
		for _, s := range a.Signatories() {
			key, ok := privs[s]
			if !ok {
				return fmt.Errorf("demo: %s: signer %s has no demo key", n, s)
			}
			if err := authz.SignFile(path, key, s); err != nil {
				return fmt.Errorf("demo: sign %s as %s: %w", n, s, err)
			}
		}
	}
	return nil
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func writeJSON(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), mode); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return os.Chmod(path, mode)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}
