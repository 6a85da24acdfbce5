package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/childrens-trust/trustgate/internal/app"
	"github.com/childrens-trust/trustgate/internal/config"
)

func serveCommand() *cobra.Command {
	var cfgPath, listen string
	var sets []string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Long: `Run the gateway. With no --config it runs on its embedded defaults: the
demo registry with unsigned protocols (none in force) and the embedded
policies. 'make run' prepares the signed demo Trust and uses its config.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath, sets)
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Listen = listen
			}
			log := newLogger(cfg.Log)
			return serve(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (YAML); empty: embedded defaults")
	cmd.Flags().StringVar(&listen, "listen", "", "listen address, overriding the config (plain HTTP only on loopback)")
	addSet(cmd, &sets)
	return cmd
}

// loadConfig is the configuration of every command that reads one: the
// file (empty: the embedded defaults), then each key's TRUSTGATE_…
// environment variable, then each --set KEY=VALUE, validated once they
// are all applied (docs/config.md). Every error is a bad config (exit 3).
func loadConfig(path string, sets []string) (config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return cfg, err
	}
	if err := config.Overrides(&cfg, os.Environ(), sets); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// addSet gives a command that reads the config the repeatable --set flag.
func addSet(cmd *cobra.Command, sets *[]string) {
	cmd.Flags().StringArrayVar(sets, "set", nil, "KEY=VALUE: set one config key over the file and the TRUSTGATE_… environment (docs/config.md); repeatable")
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	// The collector's target, unless the operator set GOGC.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cfg.Runtime.GCPercent)
	}
	// The goroutines that run at once, unless the operator set GOMAXPROCS:
	// by default one more than the CPUs, for the audit committer.
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		n := cfg.Runtime.Procs
		if n == 0 {
			n = runtime.GOMAXPROCS(0) + 1
		}
		runtime.GOMAXPROCS(n)
	}
	// The soft memory limit, unless the operator set GOMEMLIMIT.
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.Runtime.MemoryLimitMiB > 0 {
		debug.SetMemoryLimit(int64(cfg.Runtime.MemoryLimitMiB) << 20)
	}
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_, _ = a.Reload(ctx, "SIGHUP")
			}
		}
	}()
	log.Info("trustgate listening", "addr", a.Addr(), "gateway_id", cfg.GatewayID, "data_dir", cfg.DataDir)
	return a.Run(ctx)
}

func newLogger(c config.Log) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
