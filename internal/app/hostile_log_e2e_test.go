package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// TestOutsiderRecomputesEveryLeafOfAHostileLog fills a real gateway's log
// with every kind of byte sequence a caller can make arrive — invalid
// UTF-8 and control characters in paths, bodies and tokens, JavaScript
// separators, astral characters, long fields, NHS numbers — and then has
// the outsider's verifier (testdata/audit-format/verify_leaves.py,
// written from docs/audit-format.md alone) recompute every leaf and the
// chain from the export and from the API's pages of entries.
func TestOutsiderRecomputesEveryLeafOfAHostileLog(t *testing.T) {
	g := startGateway(t, nil)
	tok := func() string { return g.token("exley-csc", "social_worker") }
	for _, path := range []string{
		"/v1/%FF%FE/%C3%28/%E2%82", "/v1/%00%01%1F%7F", "/v1/%E2%80%A8%E2%80%A9%EF%BB%BF", "/v1/%F0%9F%98%80%F4%8F%BF%BF",
		"/v1/subjects/9990000018/consents%0A", "/v1/subjects/999%20000%200018/consents", "/v1/" + strings.Repeat("%C3%A9", 3000),
		"/v1/protocols?%FF=%00", "/v1/audit/entries?subject=%FF",
	} {
		g.do(http.MethodGet, path, tok(), nil)
		g.do(http.MethodGet, path, "", nil) // unauthenticated too
	}
	for _, body := range []string{
		`{"subject":"9990000018","provider":"exley-police","purpose":"\u0000\u001f\u2028<script>&amp;","categories":["police_concerns"]}`,
		"{\"subject\":\"9990000018\",\"provider\":\"exley-police\",\"purpose\":\"\xff\xfe\xc3\x28\",\"categories\":[\"household\"]}",
		`{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["` + strings.Repeat("\\ud83d\\ude00", 2000) + `"]}`,
		`{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns"],"\u001e\u2029":1}`,
		`{"subject":"999 000 0018\u0000","provider":"exley-police"}`,
		"not json \x00\xff",
	} {
		g.do(http.MethodPost, "/v1/decisions", tok(), []byte(body))
	}
	// Raw requests no client would send: bytes that are not UTF-8 in the
	// request line and in the token.
	raw := func(target, auth string) {
		c, err := net.Dial("tcp", strings.TrimPrefix(g.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", target, auth)
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			resp.Body.Close()
		}
	}
	raw("/v1/\xff\xferaw", tok())
	for _, bad := range []string{"\x7f\xff\xc3\x28", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJcdTAwMDBcdTIwMjgifQ.", strings.Repeat("A", 6000)} {
		raw("/v1/protocols", bad)
	}

	size := g.app.Audit().TreeHead().Size
	if size < 25 {
		t.Fatalf("only %d entries", size)
	}
	dir := t.TempDir()
	script := filepath.Join("..", "..", "testdata", "audit-format", "verify_leaves.py")
	outsider := func(name string, data []byte) string {
		t.Helper()
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("python3", script, f).CombinedOutput()
		if err != nil {
			t.Fatalf("the outsider's verifier fails on the %s: %v\n%s", name, err, out)
		}
		return strings.TrimSpace(string(out))
	}

	// The export, in log order.
	var export bytes.Buffer
	if _, err := g.app.Audit().Export(context.Background(), &export, time.Time{}, time.Time{}, audit.FormatJSONL); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(export.Bytes(), []byte("\n")); uint64(n) < size {
		t.Fatalf("export holds %d entries, the log %d", n, size)
	}
	if got, want := outsider("export.jsonl", export.Bytes()), fmt.Sprintf("leaves recomputed, chain intact"); !strings.HasSuffix(got, want) || !strings.HasPrefix(got, fmt.Sprint(bytes.Count(export.Bytes(), []byte("\n")))+" ") {
		t.Fatalf("outsider on the export: %s", got)
	}
	if bytes.Contains(export.Bytes(), []byte("9990000018")) {
		t.Fatal("an NHS number in clear in the exported log")
	}

	// The API's pages, read oldest first, up to the size exported.
	var lines [][]byte
	cursor := ""
	for {
		var page struct {
			Entries    []json.RawMessage `json:"entries"`
			NextCursor string            `json:"next_cursor"`
		}
		path := "/v1/audit/entries?limit=500"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		decodeInto(t, g.get("exley-police", "auditor", path).Raw, &page)
		for _, e := range page.Entries {
			lines = append(lines, append(bytes.Clone(e), '\n'))
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	slices.Reverse(lines)
	api := bytes.Join(lines, nil)
	if got := outsider("api.jsonl", api); got != fmt.Sprintf("%d leaves recomputed, chain intact", len(lines)) || uint64(len(lines)) < size {
		t.Fatalf("outsider on the API's entries (%d, log %d): %s", len(lines), size, got)
	}
	// Every hostile kind is in what was checked.
	for _, want := range []string{`\u0000`, `\u2028`, "\ufffd", "😀", "/v1/\ufffd\ufffdraw", `"kind":"auth_failure"`, `"status":404`, `"status":400`} {
		if !bytes.Contains(api, []byte(want)) {
			t.Errorf("no entry holding %q was checked", want)
		}
	}
}
