package hostile

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
)

// job is one hostile request: it runs, and says what came back and
// whether that was a breach (violation non-empty).
type job struct {
	class string
	run   func() (Answer, string)
}

// tally counts answers per class and status, and keeps the breaches.
type tally struct {
	mu         sync.Mutex
	byClass    map[string]map[int]int
	violations map[string][]string
	errors     []string
}

func newTally() *tally {
	return &tally{byClass: map[string]map[int]int{}, violations: map[string][]string{}}
}

func (tl *tally) add(class string, a Answer, violation string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.byClass[class] == nil {
		tl.byClass[class] = map[int]int{}
	}
	if a.Err != nil {
		tl.errors = append(tl.errors, class+": "+a.Err.Error())
		tl.byClass[class][0]++
		return
	}
	tl.byClass[class][a.Status]++
	if violation != "" {
		tl.violations[class] = append(tl.violations[class], violation)
	}
}

func (tl *tally) total(class string) int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	n := 0
	for _, c := range tl.byClass[class] {
		n += c
	}
	return n
}

// runJobs runs the jobs on workers goroutines.
func runJobs(tl *tally, jobs []job, workers int) {
	ch := make(chan job)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				a, v := j.run()
				tl.add(j.class, a, v)
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
}

// table writes the tally as a Markdown table (for docs/security.md).
func (tl *tally) table(order []string) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var b strings.Builder
	b.WriteString("| class | requests | answers (status × count) | breaches |\n|---|---|---|---|\n")
	sum := 0
	for _, class := range order {
		m := tl.byClass[class]
		var codes []int
		n := 0
		for c, k := range m {
			codes = append(codes, c)
			n += k
		}
		sort.Ints(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d × %d", c, m[c]))
		}
		sum += n
		fmt.Fprintf(&b, "| %s | %d | %s | %d |\n", class, n, strings.Join(parts, ", "), len(tl.violations[class]))
	}
	fmt.Fprintf(&b, "| **all** | **%d** | | |\n", sum)
	return b.String()
}

func is2xx(s int) bool { return s >= 200 && s < 300 }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func seedFromEnv() (uint64, int) {
	seed := uint64(20261202)
	if s := os.Getenv("TRUSTGATE_HOSTILE_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	scale := 1
	if s := os.Getenv("TRUSTGATE_HOSTILE_SCALE"); s != "" {
		fmt.Sscan(s, &scale)
	}
	if scale < 1 {
		scale = 1
	}
	return seed, scale
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func randSub(r *rand.Rand) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 6)
	for i := range b {
		b[i] = letters[r.IntN(len(letters))]
	}
	return "h-" + string(b)
}

func esc(s string) string { return url.PathEscape(s) }

var _ = http.MethodGet
