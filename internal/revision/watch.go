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
	// NotWatching lists the directories the config names (WatchDirs)
	// that are not being watched at the moment, each with the reason
	// (removed, not yet replaced, cannot be watched). While it is not
	// empty, Error says so too.
	NotWatching []string `json:"not_watching,omitempty"`
	// Resyncs counts the times a watched directory was found replaced
	// (a new directory under the same name) and watched again.
	Resyncs int64 `json:"resyncs"`
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
//
// A deploy often replaces a directory instead of editing it (`rm -rf
// policies && mv new policies`, or a fresh copy of protocols/): inotify
// watches the directory's inode, which is then gone. So Watch also
// watches each directory's parent, and on a create, rename or removal of
// a watched name — and every resyncEvery, in case an event was missed —
// resyncs: every directory WatchDirs names is compared (os.SameFile) with
// the one being watched, re-added when it was replaced, and reported in
// WatchStatus.NotWatching while it is missing; a resync that finds a
// directory replaced triggers a reload.
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
	ws := &dirWatch{w: w, watched: map[string]os.FileInfo{}, parents: map[string]bool{}, want: dirs}
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil {
			ws.watched[d] = fi
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
	ws.addParents(dirs)
	l.o.Log.Info("watching for policy and protocol changes", "dirs", dirs, "debounce", debounce)

	var timer *time.Timer
	var fire <-chan time.Time
	var first time.Time
	var changed []string
	schedule := func(name string) {
		if !slices.Contains(changed, name) {
			changed = append(changed, name)
		}
		now := time.Now()
		switch {
		case timer == nil:
			first = now
			timer = time.NewTimer(debounce)
			fire = timer.C
		case now.Sub(first) < 10*debounce:
			timer.Reset(debounce)
		}
	}
	resync := func() {
		want := l.WatchDirs()
		replaced, missing := ws.resync(want)
		ws.addParents(want)
		publish(func(s *WatchStatus) {
			s.Dirs = ws.dirs(want)
			wasMissing := len(s.NotWatching) > 0
			s.NotWatching = missing
			switch {
			case len(missing) > 0:
				s.Error = "not watching what the config names: " + strings.Join(missing, "; ")
			case wasMissing:
				s.Error = ""
			}
			s.Resyncs += int64(len(replaced))
		})
		for _, d := range replaced {
			l.o.Log.Warn("a watched directory was replaced; watching the new one", "dir", d)
			schedule(d)
		}
		if len(missing) > 0 {
			l.o.Log.Error("the file watch is not watching what the config names", "missing", missing)
		}
	}
	tick := time.NewTicker(resyncEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case <-tick.C:
			resync()
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod || ignoredName(ev.Name) {
				continue
			}
			if ws.parentOnly(ev.Name) {
				continue // another file beside a watched directory
			}
			events.Add(1)
			if ev.Has(fsnotify.Create) && filepath.Dir(ev.Name) == filepath.Clean(l.src.ProtocolsDir) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = w.Add(ev.Name) // a new key-set directory
					ws.watched[filepath.Clean(ev.Name)] = fi
				}
			}
			publish(func(s *WatchStatus) { s.LastEvent, s.LastChange = l.o.Now(), ev.Op.String()+" "+ev.Name })
			schedule(ev.Name)
			if slices.Contains(ws.want, filepath.Clean(ev.Name)) {
				resync() // a watched directory itself was created, removed or renamed
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			l.o.Log.Error("watch error", "err", err)
			publish(func(s *WatchStatus) { s.Error = err.Error() })
		case <-fire:
			timer, fire = nil, nil
			resync() // pick up a replaced directory before loading from it
			source := "file watch: " + describeChanges(changed)
			changed = nil
			l.Reload(ctx, source)
		}
	}
}

// resyncEvery is how often Watch checks, without an event, that it
// watches the directories the config names.
var resyncEvery = 2 * time.Second

// dirWatch is the set of directories Watch has added, with the identity
// (inode) of each when added, and the parents watched for replacements.
type dirWatch struct {
	w       *fsnotify.Watcher
	watched map[string]os.FileInfo
	parents map[string]bool
	want    []string // what WatchDirs named at the last resync
}

// resync makes the watch match want: a directory that is gone is dropped
// (and reported missing), one replaced by a new directory of the same
// name is watched again (and returned as replaced), one no longer wanted
// is removed.
func (d *dirWatch) resync(want []string) (replaced, missing []string) {
	d.want = want
	for name := range d.watched {
		if !slices.Contains(want, name) {
			_ = d.w.Remove(name)
			delete(d.watched, name)
		}
	}
	for _, name := range want {
		cur, err := os.Stat(name)
		old, had := d.watched[name]
		switch {
		case err != nil:
			if had {
				_ = d.w.Remove(name)
				delete(d.watched, name)
			}
			missing = append(missing, fmt.Sprintf("%s: %v", name, err))
			continue
		case had && os.SameFile(old, cur):
			continue
		case had:
			_ = d.w.Remove(name) // the watch of the old directory, if it still exists elsewhere
		}
		if err := d.w.Add(name); err != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		d.watched[name] = cur
		replaced = append(replaced, name)
	}
	return replaced, missing
}

// addParents watches the parent of every wanted directory (not itself
// wanted), to see it replaced.
func (d *dirWatch) addParents(want []string) {
	for _, name := range want {
		p := filepath.Dir(name)
		if d.parents[p] || slices.Contains(want, p) {
			continue
		}
		if err := d.w.Add(p); err == nil {
			d.parents[p] = true
		}
	}
}

// parentOnly reports whether an event is about a file in a watched
// parent that is neither wanted nor inside a watched directory.
func (d *dirWatch) parentOnly(name string) bool {
	dir := filepath.Dir(name)
	if !d.parents[dir] {
		return false
	}
	if _, ok := d.watched[dir]; ok {
		return false
	}
	return !slices.Contains(d.want, filepath.Clean(name))
}

// dirs are the wanted directories being watched, in want's order.
func (d *dirWatch) dirs(want []string) []string {
	var out []string
	for _, name := range want {
		if _, ok := d.watched[name]; ok {
			out = append(out, name)
		}
	}
	return out
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
