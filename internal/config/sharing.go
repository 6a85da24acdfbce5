package config

import "time"

// Providers tunes how the gateway fetches records from provider agencies
// (docs/providers.md).
type Providers struct {
	// Timeout bounds one fetch, connecting to last byte. Default 5s.
	Timeout Duration `yaml:"timeout"`
	// MaxResponseBytes bounds a provider's answer. Default 1 MiB.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// MaxInFlight bounds the fetches in flight to one provider; a fetch
	// waits at most QueueWait for a slot. Defaults 16 and 250ms.
	MaxInFlight int      `yaml:"max_in_flight"`
	QueueWait   Duration `yaml:"queue_wait"`
	// BreakerFailures consecutive failures open a provider's circuit for
	// BreakerCooldown, after which one probe is let through. Defaults 5
	// and 30s.
	BreakerFailures int      `yaml:"breaker_failures"`
	BreakerCooldown Duration `yaml:"breaker_cooldown"`
	// TokenLifetime is the decision token's exp − iat. Default 30s, at
	// most 60s.
	TokenLifetime Duration `yaml:"token_lifetime"`
	// CAFile holds the CA certificates (PEM) that https provider endpoints
	// and webhooks are verified against (certs/README.md); empty: the
	// system roots.
	CAFile string `yaml:"ca_file"`
}

// Notifications tunes access notification delivery (docs/providers.md).
type Notifications struct {
	// Timeout bounds one webhook delivery attempt. Default 5s.
	Timeout Duration `yaml:"timeout"`
	// RetryMin is the backoff after a first failed attempt; it doubles up
	// to RetryMax. Defaults 1s and 5m.
	RetryMin Duration `yaml:"retry_min"`
	RetryMax Duration `yaml:"retry_max"`
	// Retention: delivered notifications older than this are purged.
	// Default 720h (30 days).
	Retention Duration `yaml:"retention"`
}

func defaultProviders() Providers {
	return Providers{
		Timeout:          Duration{5 * time.Second},
		MaxResponseBytes: 1 << 20,
		MaxInFlight:      16,
		QueueWait:        Duration{250 * time.Millisecond},
		BreakerFailures:  5,
		BreakerCooldown:  Duration{30 * time.Second},
		TokenLifetime:    Duration{30 * time.Second},
	}
}

func defaultNotifications() Notifications {
	return Notifications{
		Timeout:   Duration{5 * time.Second},
		RetryMin:  Duration{time.Second},
		RetryMax:  Duration{5 * time.Minute},
		Retention: Duration{30 * 24 * time.Hour},
	}
}

// validateSharing checks the providers and notifications sections.
func (c *Config) validateSharing(bad func(field, format string, a ...any)) {
	p, n := c.Providers, c.Notifications
	if p.Timeout.Duration < 100*time.Millisecond || p.Timeout.Duration > 2*time.Minute {
		bad("providers.timeout", "must be between 100ms and 2m")
	}
	if p.MaxResponseBytes < 1024 || p.MaxResponseBytes > 64<<20 {
		bad("providers.max_response_bytes", "must be between 1024 and 67108864")
	}
	if p.MaxInFlight < 1 || p.MaxInFlight > 1024 {
		bad("providers.max_in_flight", "must be between 1 and 1024")
	}
	if p.QueueWait.Duration < 0 || p.QueueWait.Duration > p.Timeout.Duration {
		bad("providers.queue_wait", "must be between 0 and providers.timeout")
	}
	if p.BreakerFailures < 1 || p.BreakerFailures > 1000 {
		bad("providers.breaker_failures", "must be between 1 and 1000")
	}
	if p.BreakerCooldown.Duration < 10*time.Millisecond || p.BreakerCooldown.Duration > time.Hour {
		bad("providers.breaker_cooldown", "must be between 10ms and 1h")
	}
	if p.TokenLifetime.Duration < time.Second || p.TokenLifetime.Duration > 60*time.Second {
		bad("providers.token_lifetime", "must be between 1s and 60s")
	}
	if n.Timeout.Duration < 100*time.Millisecond || n.Timeout.Duration > 2*time.Minute {
		bad("notifications.timeout", "must be between 100ms and 2m")
	}
	if n.RetryMin.Duration < 10*time.Millisecond || n.RetryMin.Duration > time.Hour {
		bad("notifications.retry_min", "must be between 10ms and 1h")
	}
	if n.RetryMax.Duration < n.RetryMin.Duration || n.RetryMax.Duration > 24*time.Hour {
		bad("notifications.retry_max", "must be between notifications.retry_min and 24h")
	}
	if n.Retention.Duration < time.Hour {
		bad("notifications.retention", "must be at least 1h")
	}
}
