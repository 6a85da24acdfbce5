package vault_test

import (
	"context"
	"fmt"
	"time"

	"github.com/childrens-trust/trustgate/internal/keys/vault"
)

// Open a store as a gateway does: Vault's address, CA and namespace from
// the environment (VAULT_ADDR, VAULT_CACERT, VAULT_NAMESPACE), the AppRole
// role id from the configuration and its secret id from a file, read at
// each login. (Not run: it needs a Vault; the tests run one.)
func ExampleOpen() {
	ctx := context.Background()
	s, err := vault.Open(ctx, vault.Options{
		Mount:               "transit",
		SigningKey:          "trustgate-signing",
		PseudonymKey:        "trustgate-pseudonym",
		PseudonymKeyVersion: 1,
		AuthMethod:          vault.AuthAppRole,
		RoleID:              "7f3c0a52-…",
		SecretIDFile:        "/etc/trustgate/vault-secret-id",
		Timeout:             2 * time.Second,
	})
	if err != nil {
		// One line, wrapping keys.ErrUnavailable: what failed and where.
		fmt.Println(err)
		return
	}
	defer s.Close()
	p, _ := s.Pseudonym(ctx, "9990000018")             // 64 lowercase hex characters
	jws, _ := s.Sign(ctx, []byte(`{"receipt":1}`), "") // header kid "trustgate-signing:N"
	fmt.Println(len(p), jws != "")
}
