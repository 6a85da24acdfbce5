package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The docs runner: every walk-through in README.md and docs/ runs as
// pasted, against a demo gateway prepared for it, and prints what the page
// says it prints. The convention it reads is written in docs/README.md.

// TestMain lets this test binary be the `trustgate` the pages call: the
// runner puts a two-line script named trustgate on the session's PATH that
// executes this binary with docsCLIEnv set, and main runs as the real
// command would. One binary, built once by `go test`.
func TestMain(m *testing.M) {
	if os.Getenv(docsCLIEnv) == "1" {
		os.Unsetenv(docsCLIEnv)
		main()
	}
	os.Exit(m.Run())
}

const docsCLIEnv = "TRUSTGATE_DOCS_TEST_CLI"

// docBlock is one fenced block of a page.
type docBlock struct {
	lang       string
	line       int    // the line of the opening fence (1-based)
	text       string // the block's content, indentation removed
	directives []string
}

// docStep is a shell block to run and what it should print.
type docStep struct {
	n        int // 1-based among the page's shell blocks
	block    docBlock
	expect   *docBlock // nil: output not checked
	notRun   string    // reason, when marked `<!-- not run: … -->`
	exit     int       // the status the block's last command returns
	stopDemo bool      // `<!-- gateway stopped -->`: the runner stops the demo first
}

var (
	fenceRE     = regexp.MustCompile("^( {0,3})```\\s*([A-Za-z0-9_-]*)") // CommonMark: a fence is indented at most 3 spaces
	directiveRE = regexp.MustCompile(`^\s*<!--\s*(.*?)\s*-->\s*$`)
)

// parseBlocks returns the fenced blocks of a Markdown page, each with the
// HTML comments on the lines just above it.
func parseBlocks(src string) []docBlock {
	lines := strings.Split(src, "\n")
	var blocks []docBlock
	for i := 0; i < len(lines); i++ {
		m := fenceRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		indent := m[1]
		b := docBlock{lang: m[2], line: i + 1}
		for j := i - 1; j >= 0; j-- {
			d := directiveRE.FindStringSubmatch(lines[j])
			if d == nil {
				break
			}
			b.directives = append([]string{d[1]}, b.directives...)
		}
		var body []string
		for i++; i < len(lines); i++ {
			if strings.HasPrefix(strings.TrimLeft(lines[i], " "), "```") && len(lines[i])-len(strings.TrimLeft(lines[i], " ")) <= 3 {
				break
			}
			body = append(body, strings.TrimPrefix(lines[i], indent))
		}
		b.text = strings.Join(body, "\n")
		blocks = append(blocks, b)
	}
	return blocks
}

// pageSteps pairs each shell block with the text block right after it (only
// blank lines between) and reads its directives.
func pageSteps(src string) ([]docStep, error) {
	blocks := parseBlocks(src)
	lines := strings.Split(src, "\n")
	var steps []docStep
	for i, b := range blocks {
		if !isShell(b.lang) {
			continue
		}
		s := docStep{n: len(steps) + 1, block: b}
		for _, d := range b.directives {
			switch {
			case strings.HasPrefix(d, "not run:"):
				s.notRun = strings.TrimSpace(strings.TrimPrefix(d, "not run:"))
				if s.notRun == "" {
					return nil, fmt.Errorf("line %d: `<!-- not run: -->` needs a reason", b.line)
				}
			case strings.HasPrefix(d, "exit "):
				n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(d, "exit ")))
				if err != nil {
					return nil, fmt.Errorf("line %d: `<!-- %s -->`: want `<!-- exit N -->`", b.line, d)
				}
				s.exit = n
			case d == "gateway stopped":
				s.stopDemo = true
			}
		}
		if i+1 < len(blocks) && isOutput(blocks[i+1].lang) {
			end := b.line + strings.Count(b.text, "\n") + 2 // the closing fence
			between := strings.TrimSpace(strings.Join(lines[end:blocks[i+1].line-1], "\n"))
			if between == "" {
				s.expect = &blocks[i+1]
			}
		}
		steps = append(steps, s)
	}
	return steps, nil
}

func isShell(lang string) bool  { return lang == "sh" || lang == "bash" || lang == "shell" }
func isOutput(lang string) bool { return lang == "text" || lang == "console" }

// matchOutput compares what a block printed with what the page says, line
// by line after trimming trailing spaces and blank lines at either end. In
// an expected line `…` matches any run of characters; a line that is only
// `…` matches any number of lines, none included. It returns the 1-based
// line of the expected text at which they part, or 0.
func matchOutput(expected, got string) (int, string) {
	exp := trimLines(expected)
	out := trimLines(got)
	var best, bestGot int
	var match func(i, j int) bool
	match = func(i, j int) bool {
		if i > best || (i == best && j > bestGot) {
			best, bestGot = i, j
		}
		if i == len(exp) {
			return j == len(out)
		}
		if strings.TrimSpace(exp[i]) == "…" {
			for k := j; k <= len(out); k++ {
				if match(i+1, k) {
					return true
				}
			}
			return false
		}
		return j < len(out) && lineMatches(exp[i], out[j]) && match(i+1, j+1)
	}
	if match(0, 0) {
		return 0, ""
	}
	gotLine := "(end of output)"
	if bestGot < len(out) {
		gotLine = out[bestGot]
	}
	if best == len(exp) {
		return len(exp), "more output than the page shows, from: " + gotLine
	}
	return best + 1, fmt.Sprintf("expected %q\n          got %q", exp[best], gotLine)
}

func trimLines(s string) []string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " \t\r")
	}
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

var lineREs = map[string]*regexp.Regexp{}

func lineMatches(pattern, line string) bool {
	if !strings.Contains(pattern, "…") {
		return pattern == line
	}
	re, ok := lineREs[pattern]
	if !ok {
		parts := strings.Split(pattern, "…")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		re = regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		lineREs[pattern] = re
	}
	return re.MatchString(line)
}

func TestMatchOutput(t *testing.T) {
	for _, c := range []struct {
		exp, got string
		line     int
	}{
		{"a\nb", "a\nb\n", 0},
		{"a\n…\nd", "a\nb\nc\nd", 0},
		{"a\n…\nd", "a\nd", 0},
		{`{"id":"…","n":2}`, `{"id":"c-1234","n":2}`, 0},
		{`{"id":"…","n":2}`, `{"id":"c-1234","n":3}`, 1},
		{"a\nb", "a\nc", 2},
		{"a", "a\nextra", 1},
		{"a\nb", "a", 2},
		{"…\nok", "x\ny\nok", 0},
	} {
		if line, msg := matchOutput(c.exp, c.got); line != c.line {
			t.Errorf("matchOutput(%q, %q) = %d %s; want %d", c.exp, c.got, line, msg, c.line)
		}
	}
}

func TestParseSteps(t *testing.T) {
	page := "# t\n\n```sh\necho hi\n```\n\n```text\nhi\n```\n\n<!-- not run: needs systemd -->\n```sh\nsystemctl start x\n```\n\n" +
		"<!-- exit 1 -->\n```sh\nfalse\n```\nprose\n```text\nnot its output\n```\n  ```bash\n  echo x\n  ```\n"
	steps, err := pageSteps(page)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 {
		t.Fatalf("%d steps: %+v", len(steps), steps)
	}
	if steps[0].expect == nil || steps[0].expect.text != "hi" || steps[0].block.line != 3 {
		t.Errorf("step 1: %+v", steps[0])
	}
	if steps[1].notRun != "needs systemd" || steps[1].expect != nil {
		t.Errorf("step 2: %+v", steps[1])
	}
	if steps[2].exit != 1 || steps[2].expect != nil {
		t.Errorf("step 3: %+v", steps[2])
	}
	if steps[3].block.text != "echo x" {
		t.Errorf("step 4: %q", steps[3].block.text)
	}
	if _, err := pageSteps("<!-- not run: -->\n```sh\nx\n```\n"); err == nil {
		t.Error("a not-run marker without a reason was accepted")
	}
}

// indentedCommandRE finds a command in an indented (4-space) code block,
// which the runner would pass over.
var indentedCommandRE = regexp.MustCompile(`^ {4,}(trustgate|bin/trustgate|curl|make|\$TG) `)

// TestDocsShellBlocksAreFenced keeps every command in a page where the
// runner sees it: in a fenced ```sh block, not an indented code block.
func TestDocsShellBlocksAreFenced(t *testing.T) {
	for _, page := range docPages(t) {
		src, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		inFence := false
		for i, line := range strings.Split(string(src), "\n") {
			if fenceRE.MatchString(line) {
				inFence = !inFence
				continue
			}
			if !inFence && indentedCommandRE.MatchString(line) {
				t.Errorf("%s:%d: a command in an indented code block: put it in a fenced ```sh block (docs/README.md), or it is never run: %s",
					strings.TrimPrefix(page, "../../"), i+1, strings.TrimSpace(line))
			}
		}
	}
}

// docPages are the pages the runner reads: README.md and every page in
// docs/. A page with no shell block to run is passed over.
func docPages(t *testing.T) []string {
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../../README.md"}, pages...)
}

// TestDocsRun runs every walk-through as pasted: for each page, a demo
// Trust prepared with `demo init --dir .demo` in a fresh temporary working
// directory and started with `demo run` (the providers on the registry's
// fixed ports, so pages run one after another), then each shell block in
// order in one bash session, stopping at the first block whose output or
// status differs from the page.
func TestDocsRun(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("the docs runner needs bash:", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	script := "#!/bin/sh\n" + docsCLIEnv + "=1 exec " + strconv.Quote(self) + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "trustgate"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, page := range docPages(t) {
		src, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(page, "../../")
		steps, err := pageSteps(string(src))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		runnable := 0
		for _, s := range steps {
			if s.notRun == "" {
				runnable++
			}
		}
		if runnable == 0 {
			if len(steps) > 0 {
				t.Logf("%s: %d blocks, every one marked not run", name, len(steps))
			}
			continue
		}
		t.Run(filepath.Base(name), func(t *testing.T) { runPage(t, name, steps, bin) })
	}
}

// docsRepoDirs are the repository's folders a page may read (never
// write), linked into the page's working directory so that it reads them
// as a reader in a checkout does.
var docsRepoDirs = []string{"testdata", "protocols", "policies", "deploy", "docs"}

func runPage(t *testing.T, name string, steps []docStep, bin string) {
	start := time.Now()
	work := t.TempDir()
	for _, d := range docsRepoDirs {
		abs, err := filepath.Abs(filepath.Join("../..", d))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(work, d)); err != nil {
			t.Fatal(err)
		}
	}
	g := startPageDemo(t, filepath.Join(work, ".demo"))
	addr := strings.TrimPrefix(g.base, "http://")

	sh := exec.Command("bash", "--noprofile", "--norc")
	sh.Dir = work
	sh.Env = append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+work,
		"TRUSTGATE_ADDR="+g.base,
		"TMPDIR="+t.TempDir(),
	)
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	sh.Stdout, sh.Stderr = pw, pw
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		_ = sh.Wait()
		pw.Close()
	})
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	marker := fmt.Sprintf("__docs_run_%d__", time.Now().UnixNano())
	ran, skipped := 0, 0
	for _, s := range steps {
		where := fmt.Sprintf("%s block %d (line %d)", name, s.n, s.block.line)
		if s.notRun != "" {
			skipped++
			continue
		}
		if s.stopDemo {
			g.stop()
		}
		text := strings.ReplaceAll(s.block.text, "127.0.0.1:8080", addr)
		file := filepath.Join(work, ".docs-run", fmt.Sprintf("block-%d.sh", s.n))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(text+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(stdin, "source %q </dev/null; printf '\\n%s %%d\\n' $?\n", file, marker)
		var out []string
		status := -1
		timeout := time.After(90 * time.Second)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("%s: the shell ended (an `exit` in the block?); it printed:\n%s", where, strings.Join(out, "\n"))
				}
				if rest, ok := strings.CutPrefix(l, marker+" "); ok {
					status, _ = strconv.Atoi(rest)
					break read
				}
				out = append(out, l)
			case <-timeout:
				t.Fatalf("%s: still running after 90s; it printed:\n%s", where, strings.Join(out, "\n"))
			}
		}
		got := strings.Join(out, "\n")
		if os.Getenv("TRUSTGATE_DOCS_SHOW") != "" {
			t.Logf("%s: exit %d\n%s", where, status, got)
		}
		if status != s.exit {
			t.Fatalf("%s: the block's last command exited %d, the page says %d (mark the block `<!-- exit %d -->` if that is what it shows); the block:\n%s\nit printed:\n%s",
				where, status, s.exit, status, s.block.text, got)
		}
		if s.expect != nil {
			expected := strings.ReplaceAll(s.expect.text, "127.0.0.1:8080", addr)
			if line, msg := matchOutput(expected, got); line != 0 {
				t.Fatalf("%s: output differs from the page's text block (line %d) at its line %d (page line %d):\n          %s\nthe block:\n%s\nit printed:\n%s",
					where, s.expect.line, line, s.expect.line+line, msg, s.block.text, got)
			}
		}
		ran++
	}
	// The working directory is a reader's checkout: a walk-through writes
	// its files under a temporary directory of its own, not here.
	entries, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); n != ".demo" && n != ".docs-run" && !slices.Contains(docsRepoDirs, n) {
			t.Errorf("%s: the page left %s in the working directory (a reader's repository root): write it under a temporary directory, e.g. T=$(mktemp -d) in the page's first block", name, n)
		}
	}
	t.Logf("%s: %d blocks run, %d marked not run, %s", name, ran, skipped, time.Since(start).Round(100*time.Millisecond))
}

// startPageDemo prepares a demo Trust at dir and starts `demo run` on a
// free loopback port, waiting until the demo index is seeded, as `make run`
// leaves it for a reader.
func startPageDemo(t *testing.T, dir string) *cliGateway {
	t.Helper()
	addr := freeAddr(t)
	if code, out := runCLI(t, "demo", "init", "--dir", dir, "--listen", addr); code != 0 {
		t.Fatalf("demo init: %d %s", code, out)
	}
	g := &cliGateway{dir: dir, base: "http://" + addr}
	g.stop, g.out = runGateway(t, g.base, "demo", "run", "--dir", dir)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "data", "index-seeded")); err == nil {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo index was never seeded: %s", g.out.String())
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
