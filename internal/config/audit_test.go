package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAuditCheckpointConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tg.yaml")
	yaml := "audit:\n  checkpoint_every: 250\n  checkpoint_interval: 30s\n  checkpoint_dir: witness\n  checkpoint_webhook: https://lscb.example/checkpoints\n  webhook_timeout: 3s\n  snapshot_timeout: 2m\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Audit
	if a.CheckpointEvery != 250 || a.CheckpointInterval.Duration != 30*time.Second || a.CheckpointDir != filepath.Join(dir, "witness") ||
		a.CheckpointWebhook != "https://lscb.example/checkpoints" || a.WebhookTimeout.Duration != 3*time.Second || a.SnapshotTimeout.Duration != 2*time.Minute {
		t.Fatalf("audit config %+v", a)
	}
	if a.MaxBatch != 512 {
		t.Fatal("a default was lost")
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := Default().Audit; d.CheckpointEvery != 1000 || d.CheckpointInterval.Duration != time.Minute || d.CheckpointDir != "" || d.CheckpointWebhook != "" {
		t.Fatalf("defaults %+v", d)
	}
}

func TestAuditCheckpointConfigValidation(t *testing.T) {
	cases := map[string]func(*Audit){
		"audit.checkpoint_every":    func(a *Audit) { a.CheckpointEvery = 0 },
		"audit.checkpoint_interval": func(a *Audit) { a.CheckpointInterval.Duration = 10 * time.Millisecond },
		"audit.webhook_timeout":     func(a *Audit) { a.WebhookTimeout.Duration = 0 },
		"audit.snapshot_timeout":    func(a *Audit) { a.SnapshotTimeout.Duration = 48 * time.Hour },
	}
	for _, bad := range []string{
		"http://lscb.example/cp",         // plain http off loopback
		"ftp://lscb.example/cp",          // another scheme
		"https://user:pw@lscb.example/x", // credentials in the config
		"lscb.example/cp",                // not absolute
	} {
		cases["audit.checkpoint_webhook "+bad] = func(a *Audit) { a.CheckpointWebhook = bad }
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := Default()
			mutate(&c.Audit)
			err := c.Validate()
			field, _, _ := strings.Cut(name, " ")
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), field) {
				t.Fatalf("err = %v, want %s named", err, field)
			}
		})
	}
	c := Default()
	c.Audit.CheckpointWebhook = "http://127.0.0.1:9200/checkpoints"
	if err := c.Validate(); err != nil {
		t.Fatalf("http to loopback: %v", err)
	}
}
