// Command trustgate is the Children's Trust information-sharing gateway and
// its tools. main parses flags, runs one command, and is the only place
// that exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/config"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1 // the command ran and found a problem (bad chain, protocol not in force)
	exitUsage    = 2 // wrong flags or arguments
	exitConfig   = 3 // configuration invalid
	exitBusy     = 4 // a file is locked by a running gateway
	exitInternal = 5
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
	var usage *usageError
	switch {
	case errors.As(err, &usage):
		return exitUsage
	case errors.Is(err, errFound), errors.Is(err, audit.ErrTampered):
		return exitFailure
	case errors.Is(err, config.ErrInvalid):
		return exitConfig
	case errors.Is(err, audit.ErrBusy):
		return exitBusy
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
	root.AddCommand(consoleCommand())
	return root
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}
