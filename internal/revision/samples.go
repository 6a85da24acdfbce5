package revision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/policies"
)

// SamplesFile is the name of the sample decisions file in a policies
// directory (and among the embedded policies).
const SamplesFile = "samples.yaml"

// Sample is one sample decision: a request the Trust knows the answer to.
// Every revision is evaluated on the samples before it is activated; a
// sample that errors or gets another answer keeps the revision out.
type Sample struct {
	// Trust is the Trust whose samples file this sample comes from (the
	// file's trust key): a Trust's check says plainly when the samples
	// are another Trust's, such as the demo Trust's shipped ones.
	Trust     string          `yaml:"-" json:"-"`
	Name      string          `yaml:"name" json:"name"`
	Line      int             `yaml:"-" json:"line"`
	At        protocol.Date   `yaml:"at,omitempty" json:"at,omitempty"` // default: the moment of the check
	Requester SampleRequester `yaml:"requester" json:"requester"`
	Provider  string          `yaml:"provider" json:"provider"`
	Purpose   string          `yaml:"purpose" json:"purpose"`
	// Categories asked for.
	Categories []string        `yaml:"categories" json:"categories"`
	Consents   []SampleConsent `yaml:"consents,omitempty" json:"consents,omitempty"`
	Override   policy.Override `yaml:"override,omitempty" json:"override,omitzero"`
	Expect     SampleExpect    `yaml:"expect" json:"expect"`
}

// SampleRequester is the asking practitioner.
type SampleRequester struct {
	Partner      string `yaml:"partner" json:"partner"`
	Role         string `yaml:"role" json:"role"`
	Practitioner string `yaml:"practitioner,omitempty" json:"practitioner,omitempty"`
}

// SampleConsent is a consent record on file for the sample's child, with
// dates rather than nanoseconds.
type SampleConsent struct {
	ID         string            `yaml:"id" json:"id"`
	Outcome    string            `yaml:"outcome" json:"outcome"`
	GivenBy    string            `yaml:"given_by" json:"given_by"`
	Competent  bool              `yaml:"competent,omitempty" json:"competent,omitempty"`
	Purposes   []string          `yaml:"purposes" json:"purposes"`
	Categories []string          `yaml:"categories" json:"categories"`
	Recipients policy.Recipients `yaml:"recipients" json:"recipients"`
	ValidFrom  protocol.Date     `yaml:"valid_from" json:"valid_from"`
	ValidUntil protocol.Date     `yaml:"valid_until,omitempty" json:"valid_until,omitempty"`
	Withdrawn  protocol.Date     `yaml:"withdrawn,omitempty" json:"withdrawn,omitempty"`
}

// SampleExpect is the answer the sample must get. Allow is required; the
// others are checked when given.
type SampleExpect struct {
	Allow      *bool    `yaml:"allow" json:"allow"`
	Protocol   string   `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	Rule       string   `yaml:"rule,omitempty" json:"rule,omitempty"`
	Categories []string `yaml:"categories,omitempty" json:"categories,omitempty"`
	Basis      string   `yaml:"basis,omitempty" json:"basis,omitempty"`
}

// SampleError is a samples file that cannot be read, located by line.
type SampleError struct {
	File    string
	Line    int
	Message string
}

func (e *SampleError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message)
	}
	return e.File + ": " + e.Message
}

// loadSamples reads the samples of the configured policies directory, or
// of the embedded policies. A missing file means no samples.
func loadSamples(src Sources) ([]Sample, error) {
	name := SamplesFile
	var b []byte
	var err error
	if src.PoliciesDir == "" {
		b, err = fs.ReadFile(policies.FS, SamplesFile)
	} else {
		name = filepath.Join(src.PoliciesDir, SamplesFile)
		b, err = os.ReadFile(name)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	return ParseSamples(name, b)
}

var yamlLine = strings.NewReplacer("yaml: ", "")

// ParseSamples decodes a samples file strictly (unknown keys are errors)
// and checks every sample has what it needs.
func ParseSamples(name string, b []byte) ([]Sample, error) {
	var doc struct {
		Trust   string   `yaml:"trust"` // whose samples these are
		Samples []Sample `yaml:"samples"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		msg := yamlLine.Replace(err.Error())
		return nil, &SampleError{File: name, Line: lineOfMessage(msg), Message: msg}
	}
	var root yaml.Node
	_ = yaml.Unmarshal(b, &root)
	lines := sampleLines(&root)
	for i := range doc.Samples {
		s := &doc.Samples[i]
		s.Trust = doc.Trust
		if i < len(lines) {
			s.Line = lines[i]
		}
		bad := func(field string) error {
			return &SampleError{File: name, Line: s.Line, Message: fmt.Sprintf("samples[%d] (%s): %s is required", i, s.Name, field)}
		}
		switch {
		case s.Name == "":
			return nil, bad("name")
		case s.Requester.Partner == "":
			return nil, bad("requester.partner")
		case s.Requester.Role == "":
			return nil, bad("requester.role")
		case s.Provider == "":
			return nil, bad("provider")
		case s.Purpose == "":
			return nil, bad("purpose")
		case len(s.Categories) == 0:
			return nil, bad("categories")
		case s.Expect.Allow == nil:
			return nil, bad("expect.allow")
		}
	}
	return doc.Samples, nil
}

func sampleLines(root *yaml.Node) []int {
	if len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	for i := 0; m.Kind == yaml.MappingNode && i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "samples" && m.Content[i+1].Kind == yaml.SequenceNode {
			var out []int
			for _, n := range m.Content[i+1].Content {
				out = append(out, n.Line)
			}
			return out
		}
	}
	return nil
}

func lineOfMessage(msg string) int {
	var n int
	if i := strings.Index(msg, "line "); i >= 0 {
		fmt.Sscanf(msg[i+5:], "%d", &n)
	}
	return n
}

// SampleResult is the outcome of one sample against a revision.
type SampleResult struct {
	Name    string `json:"name"`
	Line    int    `json:"line"`
	Outcome string `json:"outcome"` // pass, fail, skipped
	Detail  string `json:"detail,omitempty"`
}

// evalSample evaluates s against rev at now (or s.At). A sample that names
// a partner the registry does not know, or expects a protocol that is not
// in force at that time, is skipped: the samples describe the Trust's
// intent, the protocols in force say what is possible.
func evalSample(ctx context.Context, rev *Revision, s Sample, now time.Time) SampleResult {
	res := SampleResult{Name: s.Name, Line: s.Line}
	at := now
	if !s.At.IsZero() {
		at = s.At.Time()
	}
	req, ok1 := rev.Registry.Partner(s.Requester.Partner)
	prov, ok2 := rev.Registry.Partner(s.Provider)
	switch {
	case !ok1:
		res.Outcome, res.Detail = "skipped", s.Requester.Partner+" is not in the registry"
		return res
	case !ok2:
		res.Outcome, res.Detail = "skipped", s.Provider+" is not in the registry"
		return res
	}
	if s.Expect.Protocol != "" && !protocolInForceAt(rev, s.Expect.Protocol, at) {
		res.Outcome, res.Detail = "skipped", s.Expect.Protocol+" is not in force at "+at.UTC().Format(time.RFC3339)
		return res
	}
	in := &policy.Input{
		TimeNS:     at.UnixNano(),
		Requester:  policy.Requester{Partner: req.ID, Type: string(req.Type), Practitioner: cmpOr(s.Requester.Practitioner, "sample"), Role: s.Requester.Role},
		Provider:   policy.Provider{Partner: prov.ID, Type: string(prov.Type), Sensitive: prov.Sensitive},
		Purpose:    s.Purpose,
		Categories: s.Categories,
		Consents:   []policy.Consent{},
		Override:   s.Override,
	}
	for _, c := range s.Consents {
		in.Consents = append(in.Consents, policy.Consent{
			ID: c.ID, Outcome: c.Outcome, GivenBy: c.GivenBy, Competent: c.Competent,
			Purposes: nonNil(c.Purposes), Categories: nonNil(c.Categories),
			Recipients: policy.Recipients{
				Partners: nonNil(c.Recipients.Partners), Types: nonNil(c.Recipients.Types), Protocols: nonNil(c.Recipients.Protocols),
			},
			ValidFromNS: nsOrZero(c.ValidFrom), ValidUntilNS: nsOrZero(c.ValidUntil), WithdrawnNS: nsOrZero(c.Withdrawn),
		})
	}
	d, err := rev.Policy.Probe(ctx, in)
	if err != nil {
		res.Outcome, res.Detail = "fail", err.Error()
		return res
	}
	if why := mismatch(s.Expect, d); why != "" {
		res.Outcome, res.Detail = "fail", why
		return res
	}
	res.Outcome = "pass"
	return res
}

func mismatch(want SampleExpect, d *policy.Decision) string {
	got := "deny"
	if d.Allow {
		got = "allow"
		if d.Protocol != nil {
			got += fmt.Sprintf(" under %s rule %s of %v", d.Protocol.ID, d.Protocol.Rule, d.Categories)
		}
	}
	if len(d.Reasons) > 0 {
		got += " (" + d.Reasons[0] + ")"
	}
	exp := "deny"
	if *want.Allow {
		exp = "allow"
	}
	switch {
	case d.Allow != *want.Allow:
	case !d.Allow:
		return ""
	case want.Protocol != "" && (d.Protocol == nil || d.Protocol.ID != want.Protocol):
		exp += " under " + want.Protocol
	case want.Rule != "" && (d.Protocol == nil || d.Protocol.Rule != want.Rule):
		exp += " by rule " + want.Rule
	case want.Categories != nil && !sameSet(want.Categories, d.Categories):
		exp += fmt.Sprintf(" of %v", want.Categories)
	case want.Basis != "" && want.Basis != d.Basis:
		exp += " on basis " + want.Basis + ", got basis " + d.Basis
	default:
		return ""
	}
	return "expected " + exp + ", got " + got
}

func protocolInForceAt(rev *Revision, id string, at time.Time) bool {
	ns := at.UnixNano()
	for _, p := range rev.Policy.Data().Protocols {
		if p.ID == id && p.EffectiveFromNS <= ns && ns < p.ExpiresNS {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func nsOrZero(d protocol.Date) int64 {
	if d.IsZero() {
		return 0
	}
	return d.Time().UnixNano()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
