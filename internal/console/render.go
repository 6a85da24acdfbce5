package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"str":  str,
	"num":  num,
	"list": list,
	"join": func(v any) string {
		var out []string
		for _, x := range list(v) {
			out = append(out, str(x))
		}
		return strings.Join(out, ", ")
	},
	"when": func(v any) string {
		t, err := time.Parse(time.RFC3339Nano, str(v))
		if err != nil {
			return str(v)
		}
		return t.UTC().Format("2 Jan 2006 15:04 UTC")
	},
	"short": func(v any) string {
		s := str(v)
		if len(s) > 12 {
			return s[:12] + "…"
		}
		return s
	},
	"json": func(v any) (template.JS, error) {
		b, err := json.Marshal(v)
		return template.JS(b), err
	},
	"nhs": func(s string) string {
		if len(s) == 10 {
			return s[:3] + " " + s[3:6] + " " + s[6:]
		}
		return s
	},
	"get": func(m any, key string) any {
		if mm, ok := m.(map[string]any); ok {
			return mm[key]
		}
		return nil
	},
	"pretty": func(v any) string {
		b, _ := json.MarshalIndent(v, "", "  ")
		return string(b)
	},
	"add": func(a, b int) int { return a + b },
}

// str renders a JSON value as text.
func str(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		if t {
			return "yes"
		}
		return "no"
	default:
		return fmt.Sprint(t)
	}
}

// num reads a JSON number (0 when not one).
func num(v any) int {
	switch t := v.(type) {
	case json.Number:
		n, _ := strconv.ParseFloat(t.String(), 64)
		return int(n)
	case float64:
		return int(t)
	case int:
		return t
	}
	return 0
}

// list reads a JSON array (nil when not one).
func list(v any) []any {
	switch t := v.(type) {
	case []any:
		return t
	case []string:
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out
	}
	return nil
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// navItem is one entry of the console's navigation.
type navItem struct{ Path, Label, Page string }

var nav = []navItem{
	{Prefix, "Overview", "overview"},
	{Prefix + "reviews", "Overrides", "reviews"},
	{Prefix + "protocols", "Protocols", "protocols"},
	{Prefix + "audit", "Audit", "audit"},
	{Prefix + "child", "A child", "child"},
}

// render draws page name inside the layout. s may be nil (signed out).
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data map[string]any) {
	t := c.pages[name]
	if data == nil {
		data = map[string]any{}
	}
	data["Page"], data["Nav"], data["S"] = name, nav, s
	if s != nil {
		data["CSRF"] = s.csrf
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
