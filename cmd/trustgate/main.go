// Command trustgate is the Children's Trust information-sharing gateway and
// its tools. main parses flags, runs one command, and is the only place
// that exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/config"
	"github.com/childrens-trust/trustgate/internal/demo"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// Exit codes: the one table (README "Exit codes"), applied to every
// command by exitCode.
const (
	exitOK       = 0
	exitFailure  = 1 // the command ran and found a problem (bad chain, protocol not in force), or an input file is missing or invalid
	exitUsage    = 2 // unknown command, wrong flags or arguments
	exitConfig   = 3 // the configuration is missing or invalid
	exitBusy     = 4 // a file is locked by a running gateway
	exitInternal = 5 // anything else: the gateway, Vault or a URL could not be reached, the machine failed, or a bug
)

// errFound marks a check that ran and failed (exit 1, not an internal error).
var errFound = errors.New("check failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "trustgate:", err)
	return exitCode(err)
}

// exitCode maps a command's error onto the exit code table. It is the only
// place that does.
func exitCode(err error) int {
	var usage *usageError
	var compile *policy.CompileError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		return exitUsage
	case errors.Is(err, config.ErrInvalid):
		return exitConfig
	case errors.Is(err, audit.ErrBusy), errors.Is(err, bolt.ErrTimeout): // bbolt's lock wait ran out
		return exitBusy
	case errors.Is(err, errFound), errors.Is(err, audit.ErrTampered),
		// A log of a format this binary does not read, or a checkpoint that
		// does not verify, is an input the check rejects, not a fault of
		// the machine.
		errors.Is(err, audit.ErrUnsupportedVersion), errors.Is(err, audit.ErrBadCheckpoint),
		// A log file whose journal holds entries not yet in it is not
		// the whole log: refused, as a truncated one is.
		errors.Is(err, audit.ErrUnapplied),
		errors.Is(err, protocol.ErrInvalid), errors.Is(err, registry.ErrInvalid), errors.Is(err, protocol.ErrNotSignatory),
		// A file the command would overwrite (a private key, an exported
		// policy, a prepared demo) is refused as an input is.
		errors.Is(err, fs.ErrExist), errors.Is(err, demo.ErrExists),
		// Policies that do not compile are a check that failed.
		errors.Is(err, policy.ErrCompile), errors.As(err, &compile),
		errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return exitFailure
	default:
		return exitInternal
	}
}

type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "trustgate",
		Short:         "Information-sharing gateway and consent broker for a Children's Trust",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(serveCommand(), demoCommand(), keysCommand(), protocolCommand(), auditCommand(), tokenCommand(), devCommand(),
		providerCommand())
	root.AddCommand(vaultCommand())
	root.AddCommand(consentCommand())
	root.AddCommand(policyCommand())
	root.AddCommand(appointmentCommand())
	root.AddCommand(versionCommand())
	root.AddCommand(gatewayCommands()...) // client.go
	root.AddCommand(consoleCommand())
	root.AddCommand(backupCommand())
	strictGroups(root)
	return root
}

// strictGroups makes every command group refuse an unknown subcommand
// (exit 2) instead of printing its help and succeeding; a bare group still
// prints its help.
func strictGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictGroups(sub)
	}
	if !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return &usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
		}
		return nil
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// timeoutUsage is what --timeout means on every command that has it: one
// bound on the time the command waits for what is outside it (README
// "Timeouts").
const timeoutUsage = "the most this command waits for anything outside it: a file lock (exit 4 when it runs out), the gateway, Vault, a key set URL"

// addTimeout gives cmd the --timeout flag with its one meaning.
func addTimeout(cmd *cobra.Command, d *time.Duration, def time.Duration) {
	cmd.Flags().DurationVar(d, "timeout", def, timeoutUsage)
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}
