package revision

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchStatus says what the loader watches and what it last saw.
type WatchStatus struct {
	Dirs       []string      `json:"dirs"`
	Debounce   time.Duration `json:"debounce_ns"`
	Events     int64         `json:"events"`
	LastEvent  time.Time     `json:"last_event,omitzero"`
	LastChange string        `json:"last_change,omitempty"`
	Error      string        `json:"error,omitempty"`
}

// WatchDirs are the directories a change in which can change the
// revision: the policies directory, the protocols directory and its
// immediate subdirectories (partner key sets), and the registry's
// directory. Embedded sources are not watched.
func (l *Loader) WatchDirs() []string {
	var dirs []string
	add := func(d string) {
		if d == "" {
			return
		}
		d = filepath.Clean(d)
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	add(l.src.PoliciesDir)
	if l.src.ProtocolsDir != "" {
		add(l.src.ProtocolsDir)
		if entries, err := os.ReadDir(l.src.ProtocolsDir); err == nil {
			for _, e := range entries {
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					add(filepath.Join(l.src.ProtocolsDir, e.Name()))
				}
			}
		}
	}
	if l.src.Registry != "" {
		add(filepath.Dir(l.src.Registry))
	}
	return dirs
}

// ignoredName reports whether a changed file cannot matter: an editor's
// swap or backup file, or a temporary file that is renamed into place
// (the rename is seen under the final name).
func ignoredName(name string) bool {
	base := filepath.Base(name)
	return strings.HasSuffix(base, "~") || strings.HasSuffix(base, ".swp") ||
		strings.HasSuffix(base, ".swx") || strings.HasSuffix(base, ".tmp") || base == "4913"
}

// Watch watches WatchDirs with inotify (fsnotify) and reloads after a
// change, once a burst of changes has been quiet for debounce (a burst
// that never goes quiet is reloaded after 10 × debounce). A change that
// arrives during a reload leads to another reload after it. It returns
// nil when ctx ends, or an error if the watch cannot be set up.
func (l *Loader) Watch(ctx context.Context, debounce time.Duration) error {
	dirs := l.WatchDirs()
	if len(dirs) == 0 {
		return nil
	}
	if debounce <= 0 {
		debounce = 500 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Close()
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	st := WatchStatus{Dirs: dirs, Debounce: debounce}
	l.watch.Store(&st)
	var events atomic.Int64
	publish := func(mut func(*WatchStatus)) {
		cur := *l.watch.Load()
		mut(&cur)
		cur.Events = events.Load()
		l.watch.Store(&cur)
	}
	l.o.Log.Info("watching for policy and protocol changes", "dirs", dirs, "debounce", debounce)

	var timer *time.Timer
	var fire <-chan time.Time
	var first time.Time
	var changed []string
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod || ignoredName(ev.Name) {
				continue
			}
			events.Add(1)
			if ev.Has(fsnotify.Create) && filepath.Dir(ev.Name) == filepath.Clean(l.src.ProtocolsDir) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = w.Add(ev.Name) // a new key-set directory
				}
			}
			if !slices.Contains(changed, ev.Name) {
				changed = append(changed, ev.Name)
			}
			publish(func(s *WatchStatus) { s.LastEvent, s.LastChange = l.o.Now(), ev.Op.String()+" "+ev.Name })
			now := time.Now()
			switch {
			case timer == nil:
				first = now
				timer = time.NewTimer(debounce)
				fire = timer.C
			case now.Sub(first) < 10*debounce:
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			l.o.Log.Error("watch error", "err", err)
			publish(func(s *WatchStatus) { s.Error = err.Error() })
		case <-fire:
			timer, fire = nil, nil
			source := "file watch: " + describeChanges(changed)
			changed = nil
			l.Reload(ctx, source)
		}
	}
}

func describeChanges(files []string) string {
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if len(names) > 3 {
		return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
	}
	return strings.Join(names, ", ")
}
