// Package vaulttest runs a real HashiCorp Vault server for tests: the
// binary named by TRUSTGATE_VAULT_BIN (built once and cached by `make
// test`), as its own process on a free loopback port, with file storage in
// a temporary directory, initialised with a single unseal key so that tests
// can seal, unseal, kill and restart it without losing its state.
//
// Without TRUSTGATE_VAULT_BIN the tests that need Vault fail (they are
// never skipped) with a message naming `make test`.
package vaulttest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/childrens-trust/trustgate/internal/keys/vault"
)

// EnvBin names the environment variable holding the Vault binary's path.
const EnvBin = "TRUSTGATE_VAULT_BIN"

// Bin returns the Vault binary, or fails the test saying how to get one.
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		t.Fatalf("%s is not set: this test needs a real Vault server. Run the tests with `make test`, "+
			"which builds Vault once from the Go module proxy (internal/tools/vault) into a cache and sets %s; "+
			"or set %s to a vault binary yourself", EnvBin, EnvBin, EnvBin)
	}
	st, err := os.Stat(bin)
	if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		t.Fatalf("%s=%s is not an executable file (%v): run `make test`, which builds it", EnvBin, bin, err)
	}
	return bin
}

// Server is one Vault server process and its storage.
type Server struct {
	t         testing.TB
	bin       string
	dir       string
	port      int
	addr      string
	rootToken string
	unsealKey string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Start starts a Vault server, initialises and unseals it. It is stopped
// when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Bin(t), dir: t.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s.addr = "http://127.0.0.1:" + strconv.Itoa(s.port)
	hcl := fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}
disable_mlock = true
api_addr      = %q
log_level     = "warn"
`, filepath.Join(s.dir, "data"), s.port, s.addr)
	if err := os.WriteFile(filepath.Join(s.dir, "vault.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			s.dumpLog()
		}
	})
	s.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	init, err := s.Client().Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("vault init: %v", err)
	}
	s.unsealKey, s.rootToken = init.KeysB64[0], init.RootToken
	s.Unseal()
	return s
}

// Addr is the server's address (http on loopback).
func (s *Server) Addr() string { return s.addr }

// RootToken is the root token (tests only).
func (s *Server) RootToken() string { return s.rootToken }

// Dir is a private directory for the test's files (secret id, token).
func (s *Server) Dir() string { return s.dir }

// Client is a root client without retries.
func (s *Server) Client() *api.Client {
	s.t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = s.addr
	cfg.MaxRetries = 0
	cfg.Timeout = 10 * time.Second
	c, err := api.NewClient(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	c.SetToken(s.rootToken)
	return c
}

func (s *Server) start() {
	s.t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, "vault.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "server", "-config="+filepath.Join(s.dir, "vault.hcl"))
	cmd.Env = []string{"HOME=" + s.dir, "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start vault: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(s.exited)
	// Bounded polling until it answers (a cold start of the binary can
	// take a few seconds).
	c := s.Client()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			s.dumpLog()
			s.t.Fatalf("vault server exited at start")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Sys().HealthWithContext(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("vault server not answering on %s after 60s: %v", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Seal seals Vault (as `vault operator seal`).
func (s *Server) Seal() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client().Sys().SealWithContext(ctx); err != nil {
		s.t.Fatalf("vault seal: %v", err)
	}
}

// Unseal unseals Vault and waits until it is active.
func (s *Server) Unseal() {
	s.t.Helper()
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Sys().UnsealWithContext(ctx, s.unsealKey); err != nil {
		s.t.Fatalf("vault unseal: %v", err)
	}
	for {
		h, err := c.Sys().HealthWithContext(ctx)
		if err == nil && h.Initialized && !h.Sealed && !h.Standby {
			// Active: a token lookup proves the mounts are up.
			if _, err := c.Auth().Token().LookupSelfWithContext(ctx); err == nil {
				return
			}
		}
		if ctx.Err() != nil {
			s.t.Fatalf("vault not active 30s after unseal: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill kills the server process (SIGKILL) and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart kills the server if it runs, starts it again on the same port
// and storage, and unseals it.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
	s.Unseal()
}

// Pause stops the process (SIGSTOP): Vault accepts connections but
// answers nothing, as a hung server does.
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
}

// Resume continues a paused process (SIGCONT).
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatal(err)
	}
}

// Setup runs the operator setup (vault.Setup, as `trustgate vault setup`)
// with the root token and writes the secret id to a private file.
func (s *Server) Setup(o vault.SetupOptions) (res *vault.SetupResult, secretIDFile string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := vault.Setup(ctx, s.Client(), o)
	if err != nil {
		s.t.Fatalf("vault setup: %v", err)
	}
	f, err := os.CreateTemp(s.dir, "secret-id-*")
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(res.SecretID + "\n"); err != nil {
		s.t.Fatal(err)
	}
	return res, f.Name()
}

// AppRole returns store options for the role Setup created.
func (s *Server) AppRole(o vault.SetupOptions, res *vault.SetupResult, secretIDFile string) vault.Options {
	return vault.Options{
		Address:      s.addr,
		Mount:        o.Mount,
		SigningKey:   o.SigningKey,
		PseudonymKey: o.PseudonymKey,
		AuthMethod:   vault.AuthAppRole,
		RoleID:       res.RoleID,
		SecretIDFile: secretIDFile,
		AppRoleMount: o.AppRoleMount,
	}
}

// Write writes to Vault as root (tests' operator actions).
func (s *Server) Write(path string, data map[string]any) *api.Secret {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sec, err := s.Client().Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		s.t.Fatalf("vault write %s: %v", path, err)
	}
	return sec
}

func (s *Server) dumpLog() {
	f, err := os.Open(filepath.Join(s.dir, "vault.log"))
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	s.t.Logf("vault server log (last %d lines):\n%s", len(lines), strings.Join(lines, "\n"))
}
