package revision

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// LoaderOptions tune a Loader.
type LoaderOptions struct {
	Now func() time.Time
	Log *slog.Logger
	// Recent returns recently recorded decision inputs, re-evaluated
	// against every candidate (optional).
	Recent func(ctx context.Context) ([]Recorded, error)
	// Timeout bounds one load (default 60s).
	Timeout time.Duration
}

// Loader loads revisions from Sources, checks them, and publishes the ones
// that pass into a Holder. One load runs at a time; requests keep reading
// the Holder throughout, so they see the serving revision until the
// candidate replaces it in one atomic store.
type Loader struct {
	src    Sources
	holder *Holder
	o      LoaderOptions

	mu       sync.Mutex // one load at a time
	last     atomic.Pointer[Report]
	rejected atomic.Pointer[Report]
	reloads  atomic.Int64
	failures atomic.Int64
	watch    atomic.Pointer[WatchStatus]
}

// NewLoader returns a Loader publishing into h.
func NewLoader(h *Holder, src Sources, o LoaderOptions) *Loader {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	return &Loader{src: src, holder: h, o: o}
}

// Sources are what the loader loads from.
func (l *Loader) Sources() Sources { return l.src }

// Start loads, checks and publishes the first revision. A revision that
// fails a check is not published and the error is a *RejectedError naming
// every problem: the gateway does not start on a broken policy.
func (l *Loader) Start(ctx context.Context) (*Revision, error) {
	rep := l.load(ctx, "start-up")
	if !rep.OK {
		return nil, rep.Err()
	}
	return l.holder.Current(), nil
}

// Reload loads a candidate beside the serving revision, runs every check,
// and publishes it only if all pass. Otherwise the serving revision keeps
// serving, and the report (also logged, and kept for Status) says why.
func (l *Loader) Reload(ctx context.Context, source string) *Report {
	return l.load(ctx, source)
}

func (l *Loader) load(ctx context.Context, source string) *Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	prev := l.holder.Current()
	now := l.o.Now()
	rev, rep := Load(ctx, l.src, now, source, Options{Previous: prev, Recent: l.o.Recent})
	if prev != nil {
		l.reloads.Add(1)
	}
	l.last.Store(rep)
	if !rep.OK {
		l.failures.Add(1)
		l.rejected.Store(rep)
		args := []any{"source", source, "problems", len(rep.Problems)}
		if prev != nil {
			args = append(args, "serving", short(prev.Hash()))
		}
		l.o.Log.Error("revision rejected; the previous revision keeps serving", args...)
		for i, p := range rep.Problems {
			if i == 20 {
				l.o.Log.Error("revision rejected: more problems not logged", "more", len(rep.Problems)-20)
				break
			}
			l.o.Log.Error("revision problem", p.attrs()...)
		}
		return rep
	}
	if prev != nil && prev.Hash() == rev.Hash() {
		// Same policy and protocols in force: refresh the statuses (a
		// signature collected for a protocol not yet in force) but keep
		// the revision's identity and activation.
		rev.ActivatedAt, rev.Source = prev.ActivatedAt, prev.Source
		rep.Unchanged = true
	} else {
		rep.Activated = true
	}
	l.holder.Publish(rev)
	l.logRevision(rev, rep)
	return rep
}

func (l *Loader) logRevision(rev *Revision, rep *Report) {
	inForce := 0
	for _, st := range rev.Protocols {
		if st.InForce {
			inForce++
			continue
		}
		id := st.File
		if st.Protocol != nil {
			id = st.Protocol.ID
		}
		l.o.Log.Warn("protocol not in force", "protocol", id, "reasons", st.Reasons)
	}
	msg := "revision active"
	if rep.Unchanged {
		msg = "revision reloaded unchanged"
	}
	l.o.Log.Info(msg, "revision", short(rev.Hash()), "source", rep.Source,
		"protocols_in_force", inForce, "protocols", len(rev.Protocols), "policy_files", len(rev.PolicyFiles),
		"checks_ms", rep.Duration.Milliseconds())
}

// Status is the loader's state for GET /v1/admin/status.
type Status struct {
	Revision     string       `json:"revision"`
	ActivatedAt  time.Time    `json:"activated_at"`
	Source       string       `json:"source"`
	Reloads      int64        `json:"reloads"`
	Rejected     int64        `json:"rejected"`
	LastReload   *Report      `json:"last_reload,omitempty"`
	LastRejected *Report      `json:"last_rejected,omitempty"`
	Watch        *WatchStatus `json:"watch,omitempty"`
	Sources      Sources      `json:"sources"`
}

// Status reports the serving revision and the last reloads.
func (l *Loader) Status() Status {
	s := Status{
		Reloads: l.reloads.Load(), Rejected: l.failures.Load(),
		LastReload: l.last.Load(), LastRejected: l.rejected.Load(),
		Watch: l.watch.Load(), Sources: l.src,
	}
	if rev := l.holder.Current(); rev != nil {
		s.Revision, s.ActivatedAt, s.Source = rev.Hash(), rev.ActivatedAt, rev.Source
	}
	return s
}
