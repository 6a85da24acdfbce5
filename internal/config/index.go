package config

import "time"

// Index tunes the involvement index (docs/index.md).
type Index struct {
	// ActiveFor: an involvement not renewed within this lapses (ends).
	// Default 17520h (two years, as the Verwijsindex's signals).
	ActiveFor Duration `yaml:"active_for"`
	// VisibleFor: an ended involvement (and a closed early help episode)
	// is erased this long after its end. Default 43800h (five years).
	VisibleFor Duration `yaml:"visible_for"`
	// SweepEvery is how often retention runs (lapses and erasures).
	// Default 1h.
	SweepEvery Duration `yaml:"sweep_every"`
	// MaxCaseloadBytes bounds a caseload sync's body. Default 64 MiB
	// (about 250 000 involvements).
	MaxCaseloadBytes int64 `yaml:"max_caseload_bytes"`
}

func defaultIndex() Index {
	return Index{
		ActiveFor:        Duration{2 * 365 * 24 * time.Hour},
		VisibleFor:       Duration{5 * 365 * 24 * time.Hour},
		SweepEvery:       Duration{time.Hour},
		MaxCaseloadBytes: 64 << 20,
	}
}

// validateIndex checks the index section.
func (c *Config) validateIndex(bad func(field, format string, a ...any)) {
	x := c.Index
	if x.ActiveFor.Duration < time.Minute {
		bad("index.active_for", "must be at least 1m")
	}
	if x.VisibleFor.Duration < time.Minute {
		bad("index.visible_for", "must be at least 1m")
	}
	if x.SweepEvery.Duration < time.Second || x.SweepEvery.Duration > 24*time.Hour {
		bad("index.sweep_every", "must be between 1s and 24h")
	}
	if x.MaxCaseloadBytes < 64<<10 || x.MaxCaseloadBytes > 1<<30 {
		bad("index.max_caseload_bytes", "must be between 65536 and 1073741824")
	}
}
