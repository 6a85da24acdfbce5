package protocol

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// FindingKind says which check raised a Finding.
type FindingKind string

// The kinds of finding. A reload (internal/revision) refuses a protocols
// directory with any finding of kind invalid, lint (error), signature,
// withdrawal or duplicate; unsigned, date and withdrawn findings are the
// ordinary states of a protocol that is being signed, has not started,
// has ended, or was withdrawn.
const (
	FindingInvalid    FindingKind = "invalid"    // the file does not parse or is structurally wrong
	FindingLint       FindingKind = "lint"       // a problem against the registry
	FindingUnsigned   FindingKind = "unsigned"   // a signatory has not signed (yet)
	FindingSignature  FindingKind = "signature"  // a signature that is present does not count
	FindingDate       FindingKind = "date"       // not yet in force, or expired
	FindingWithdrawn  FindingKind = "withdrawn"  // a signatory has withdrawn (or will)
	FindingWithdrawal FindingKind = "withdrawal" // a withdrawal that does not verify
	FindingDuplicate  FindingKind = "duplicate"  // another file in force has the same id
)

// Finding locates one reason or warning of a Status: which file (the
// protocol, its .jws or its .withdrawals.json), which line of the protocol
// when it is about a field, which signatory and key when it is about a
// signature. Message is the same text as in Reasons or Warnings.
type Finding struct {
	Kind     FindingKind `json:"kind"`
	Severity Severity    `json:"severity"`
	File     string      `json:"file"`
	Line     int         `json:"line,omitempty"`
	Field    string      `json:"field,omitempty"`
	Partner  string      `json:"partner,omitempty"`
	KeyID    string      `json:"kid,omitempty"`
	Message  string      `json:"message"`
}

// String is "file:line: message" (or "file: message").
func (f Finding) String() string {
	loc := f.File
	if f.Line > 0 {
		loc = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	return loc + ": " + f.Message
}

// Locate returns the 1-based line of doc (a protocol's YAML) that holds
// field, a path as FieldError and Problem name it ("rules[2].consent",
// "rules[0].fields.health_summary[1]", "signatories[4]"). When the path
// does not exist in full it returns the line of the deepest part that
// does; 0 when doc is not YAML or field is empty.
func Locate(doc []byte, field string) int {
	if field == "" {
		return 0
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil || len(root.Content) == 0 {
		return 0
	}
	n := root.Content[0]
	line := 0
	for _, part := range strings.Split(field, ".") {
		name, idx := splitIndex(part)
		if name != "" {
			key, val := mapEntry(n, name)
			if key == nil {
				return line
			}
			line, n = key.Line, val
		}
		for _, i := range idx {
			if n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		}
	}
	return line
}

// splitIndex splits "rules[2][0]" into "rules" and [2 0].
func splitIndex(part string) (string, []int) {
	name, rest, _ := strings.Cut(part, "[")
	var idx []int
	for rest != "" {
		num, after, ok := strings.Cut(rest, "]")
		if !ok {
			break
		}
		i, err := strconv.Atoi(num)
		if err != nil {
			break
		}
		idx = append(idx, i)
		rest = strings.TrimPrefix(after, "[")
	}
	return name, idx
}

func mapEntry(n *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

var lineInMessage = regexp.MustCompile(`\bline (\d+)\b`)

// lineOf returns the line a YAML decoder message names, or 0.
func lineOf(msg string) int {
	if m := lineInMessage.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// findings collects a Status's findings as Evaluate goes.
type findings struct {
	st  *Status
	doc []byte
}

func (f findings) add(kind FindingKind, sev Severity, file string, field string, partner, kid, msg string) {
	fd := Finding{Kind: kind, Severity: sev, File: file, Field: field, Partner: partner, KeyID: kid, Message: msg}
	if field != "" {
		fd.Line = Locate(f.doc, field)
	}
	f.st.Findings = append(f.st.Findings, fd)
}
