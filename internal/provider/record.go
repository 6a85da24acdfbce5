package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/childrens-trust/trustgate/internal/nhs"
)

// Fields is one category of a record: field name → value. Values are kept
// as the provider wrote them (any JSON value) and passed on unchanged.
type Fields map[string]json.RawMessage

// Record is what a provider returns for one child: GET /v1/record answers
// it as JSON, categories and fields limited to what the decision token
// allows.
type Record struct {
	// Subject is the child's NHS number (ten digits).
	Subject string `json:"subject"`
	// Provider is the answering partner's id.
	Provider string `json:"provider,omitempty"`
	// Categories maps a data category of the Trust to its fields.
	Categories map[string]Fields `json:"categories"`
}

// Minimise returns the part of r that a decision allows: only the
// categories listed and, for a category that fields names, only the
// fields named there (a category absent from fields passes whole). A
// category left with no field is dropped. It never adds anything; the
// result shares no map with r.
func Minimise(r *Record, categories []string, fields map[string][]string) *Record {
	out := &Record{Subject: r.Subject, Provider: r.Provider, Categories: map[string]Fields{}}
	for _, c := range categories {
		src, ok := r.Categories[c]
		if !ok {
			continue
		}
		allowed, limited := fields[c]
		kept := Fields{}
		for name, v := range src {
			if limited && !contains(allowed, name) {
				continue
			}
			kept[name] = v
		}
		if len(kept) > 0 {
			out.Categories[c] = kept
		}
	}
	return out
}

// CategoryNames returns the record's categories, sorted.
func (r *Record) CategoryNames() []string {
	out := make([]string, 0, len(r.Categories))
	for c := range r.Categories {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// FieldNames returns "category.field" for every field of the record,
// sorted: what an audit entry says was disclosed, without the values.
func (r *Record) FieldNames() []string {
	var out []string
	for c, f := range r.Categories {
		for name := range f {
			out = append(out, c+"."+name)
		}
	}
	sort.Strings(out)
	return out
}

// FieldsByCategory returns the field names of each category, sorted.
func (r *Record) FieldsByCategory() map[string][]string {
	out := make(map[string][]string, len(r.Categories))
	for c, f := range r.Categories {
		names := make([]string, 0, len(f))
		for name := range f {
			names = append(names, name)
		}
		sort.Strings(names)
		out[c] = names
	}
	return out
}

// namePattern is what category and field names look like: the Trust's
// identifier syntax.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// ErrInvalidRecord classifies a record or fixture that breaks the format.
var ErrInvalidRecord = errors.New("invalid record")

// Check validates a record's shape: a valid NHS number, category and field
// names in the Trust's identifier syntax, no null category.
func (r *Record) Check() error {
	if _, err := nhs.Normalize(r.Subject); err != nil || len(r.Subject) != 10 {
		return fmt.Errorf("%w: subject is not a ten-digit NHS number", ErrInvalidRecord)
	}
	if r.Categories == nil {
		return fmt.Errorf("%w: categories is required (an object)", ErrInvalidRecord)
	}
	for c, f := range r.Categories {
		if !namePattern.MatchString(c) {
			return fmt.Errorf("%w: category %q is not an identifier", ErrInvalidRecord, clip(c))
		}
		if f == nil {
			return fmt.Errorf("%w: category %s is not an object", ErrInvalidRecord, c)
		}
		for name := range f {
			if !namePattern.MatchString(name) {
				return fmt.Errorf("%w: category %s: field %q is not an identifier", ErrInvalidRecord, c, clip(name))
			}
		}
	}
	return nil
}

// Records is a provider's fixture set: one record per child. Safe for
// concurrent reads.
type Records struct {
	partner string
	bySubj  map[string]*Record
}

// fixtureFile is the on-disk format (docs/providers.md):
//
//	{"partner": "riverside-gp", "records": [{"subject": "9990000018", "categories": {...}}, ...]}
type fixtureFile struct {
	Partner string   `json:"partner"`
	Records []Record `json:"records"`
}

// MaxFixtureBytes bounds a fixture file.
const MaxFixtureBytes = 64 << 20

// LoadRecords reads dir/<partner>.json.
func LoadRecords(dir, partner string) (*Records, error) {
	if !namePattern.MatchString(partner) {
		return nil, fmt.Errorf("%w: partner id %q is not an identifier", ErrInvalidRecord, clip(partner))
	}
	f, err := os.Open(filepath.Join(dir, partner+".json"))
	if err != nil {
		return nil, fmt.Errorf("provider: records: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFixtureBytes+1))
	if err != nil {
		return nil, fmt.Errorf("provider: records: %w", err)
	}
	if len(b) > MaxFixtureBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidRecord, f.Name(), MaxFixtureBytes)
	}
	rs, err := ParseRecords(b, partner)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return rs, nil
}

// ParseRecords decodes a fixture file strictly and checks that it belongs
// to partner and that every record is well formed and unique.
func ParseRecords(b []byte, partner string) (*Records, error) {
	var ff fixtureFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ff); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the fixture object", ErrInvalidRecord)
	}
	if ff.Partner != partner {
		return nil, fmt.Errorf("%w: the file is for partner %q, not %q", ErrInvalidRecord, clip(ff.Partner), partner)
	}
	rs := &Records{partner: partner, bySubj: make(map[string]*Record, len(ff.Records))}
	for i := range ff.Records {
		r := &ff.Records[i]
		if err := r.Check(); err != nil {
			return nil, fmt.Errorf("records[%d]: %w", i, err)
		}
		if r.Provider != "" && r.Provider != partner {
			return nil, fmt.Errorf("%w: records[%d]: provider %q is not %q", ErrInvalidRecord, i, clip(r.Provider), partner)
		}
		if _, dup := rs.bySubj[r.Subject]; dup {
			return nil, fmt.Errorf("%w: records[%d]: a second record for the same child", ErrInvalidRecord, i)
		}
		r.Provider = partner
		rs.bySubj[r.Subject] = r
	}
	return rs, nil
}

// Partner is the partner the records belong to.
func (rs *Records) Partner() string { return rs.partner }

// Len is the number of children in the set.
func (rs *Records) Len() int { return len(rs.bySubj) }

// Get returns the record of one child. The record must not be modified.
func (rs *Records) Get(subject string) (*Record, bool) {
	r, ok := rs.bySubj[subject]
	return r, ok
}

// Subjects returns every child's NHS number, sorted (fixture checks and
// tests; the server never lists children).
func (rs *Records) Subjects() []string {
	out := make([]string, 0, len(rs.bySubj))
	for s := range rs.bySubj {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
