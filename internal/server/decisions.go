package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/decision"
	"github.com/childrens-trust/trustgate/internal/nhs"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// DecisionRequest is the body of POST /v1/decisions (docs/api.md).
type DecisionRequest struct {
	Subject        string   `json:"subject"`
	Provider       string   `json:"provider"`
	Purpose        string   `json:"purpose"`
	Categories     []string `json:"categories"`
	Justification  string   `json:"justification,omitempty"`
	OverrideGround string   `json:"override_ground,omitempty"`
}

// OverrideGrounds is the closed vocabulary of safeguarding override grounds
// (protocol.OverrideGrounds: protocol lint checks rules against it).
var OverrideGrounds = protocol.OverrideGrounds

const (
	maxCategories       = 32
	maxJustificationLen = 4000
)

// decodeStrict reads exactly one JSON object into v: unknown fields, a
// second value, or a body over the limit are errors naming the field.
func (s *Server) decodeStrict(x *exchange, v any) error {
	return s.decodeLimited(x, v, s.opts.MaxBodyBytes)
}

// decodeLimited is decodeStrict with a body limit of its own (the what-if
// endpoint takes whole proposed revisions).
func (s *Server) decodeLimited(x *exchange, v any, limit int64) error {
	// A body of the wrong type is refused (415), but it is read first
	// (bounded) so that a child it names is found in the access report.
	ctErr := jsonContentType(x.r)
	r := http.MaxBytesReader(nil, x.r.Body, limit)
	raw, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return badRequest("body", fmt.Sprintf("larger than %d bytes", limit))
		}
		return badRequest("body", "could not be read")
	}
	if ctErr != nil {
		x.noteChild(subjectOf(raw))
		return ctErr
	}
	if err := decodeOne(raw, v); err != nil {
		x.noteChild(subjectOf(raw))
		return err
	}
	// The child the body names: from the decoded value when it says
	// (the body is then read once), else read leniently from the body.
	if sv, ok := v.(interface{ bodySubject() string }); ok {
		x.noteChild(sv.bodySubject())
	} else {
		x.noteChild(subjectOf(raw))
	}
	return nil
}

// bodySubject is the child a decision request names.
func (r *DecisionRequest) bodySubject() string { return r.Subject }

// decodeOne decodes raw, which must hold exactly one JSON object with only
// v's members (by their exact names), into v.
func decodeOne(raw []byte, v any) error {
	// The body is decoded once. Only when that fails is it read again,
	// structurally, to name an unknown field (which then takes precedence,
	// as it would have in a first pass).
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if uerr := unknownField(raw, v); uerr != nil {
			return uerr
		}
		return jsonError(err)
	}
	// encoding/json matches member names case-insensitively; the API's
	// names are exact. A scan of the (now known valid) object's member
	// names finds any other spelling without decoding it again.
	if !exactNames(raw, knownFields(v)) {
		if uerr := unknownField(raw, v); uerr != nil {
			return uerr
		}
	}
	if dec.More() {
		return badRequest("body", "must hold exactly one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("body", "must hold exactly one JSON object")
	}
	return nil
}

// subjectOf is the "subject" member of a JSON body's first value, read
// leniently (whatever else is wrong with the body), or "".
func subjectOf(raw []byte) string {
	var probe struct {
		Subject string `json:"subject"`
	}
	_ = json.NewDecoder(bytes.NewReader(raw)).Decode(&probe)
	return probe.Subject
}

// noteBodyChild reads the body of a request refused before its body was
// decoded, only to note the child it names (bounded as decodeStrict is).
func (s *Server) noteBodyChild(x *exchange) {
	if raw, err := io.ReadAll(http.MaxBytesReader(nil, x.r.Body, s.opts.MaxBodyBytes)); err == nil {
		x.noteChild(subjectOf(raw))
	}
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest("body", fmt.Sprintf("malformed JSON at byte %d", se.Offset))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return badRequest(field, "must be "+jsonKind(te.Type.Kind().String()))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("body", "empty or truncated JSON")
	default:
		return badRequest("body", "not a valid JSON object")
	}
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	default:
		return "a " + k
	}
}

// validate checks a decision request against the registry.
func (s *Server) validate(x *exchange, req *DecisionRequest) (*registry.Partner, string, error) {
	reg := x.rev.Registry
	subject, err := nhs.Normalize(req.Subject)
	if req.Subject == "" {
		return nil, "", badRequest("subject", "required: the child's NHS number")
	}
	if err != nil {
		var ne *nhs.Error
		if errors.As(err, &ne) {
			return nil, "", badRequest("subject", "not a valid NHS number: "+ne.Reason)
		}
		return nil, "", badRequest("subject", "not a valid NHS number")
	}
	if req.Provider == "" {
		return nil, "", badRequest("provider", "required: the partner id of the agency that holds the record")
	}
	prov, ok := reg.Partner(req.Provider)
	if !ok {
		return nil, "", badRequest("provider", fmt.Sprintf("%q is not a partner of the Trust", clip(req.Provider)))
	}
	if prov.ID == x.claims.Partner {
		return nil, "", badRequest("provider", "is the requesting agency itself")
	}
	if req.Purpose == "" {
		return nil, "", badRequest("purpose", "required")
	}
	if !reg.HasPurpose(req.Purpose) {
		return nil, "", badRequest("purpose", fmt.Sprintf("%q is not a purpose of the Trust", clip(req.Purpose)))
	}
	if len(req.Categories) == 0 {
		return nil, "", badRequest("categories", "required: at least one data category")
	}
	if len(req.Categories) > maxCategories {
		return nil, "", badRequest("categories", fmt.Sprintf("at most %d", maxCategories))
	}
	seen := map[string]bool{}
	for i, c := range req.Categories {
		field := fmt.Sprintf("categories[%d]", i)
		if !reg.HasCategory(c) {
			return nil, "", badRequest(field, fmt.Sprintf("%q is not a data category of the Trust", clip(c)))
		}
		if seen[c] {
			return nil, "", badRequest(field, fmt.Sprintf("%q is repeated", c))
		}
		seen[c] = true
	}
	if len(req.Justification) > maxJustificationLen {
		return nil, "", badRequest("justification", fmt.Sprintf("at most %d characters", maxJustificationLen))
	}
	if req.OverrideGround != "" {
		if !contains(OverrideGrounds, req.OverrideGround) {
			return nil, "", badRequest("override_ground", fmt.Sprintf("%q is not one of %s", clip(req.OverrideGround), strings.Join(OverrideGrounds, ", ")))
		}
		if why := s.weakJustification(req.Justification); why != "" {
			return nil, "", badRequest("justification", why)
		}
	}
	return prov, subject, nil
}

// weakJustification says why a justification lacks substance, or "".
// An override must say, in the practitioner's own words, why sharing
// without consent is necessary: a minimum length, enough distinct words,
// and not a stock phrase.
func (s *Server) weakJustification(j string) string {
	t := strings.TrimSpace(j)
	if t == "" {
		return "required with override_ground: say why sharing without consent is necessary"
	}
	if len([]rune(t)) < s.opts.MinJustification {
		return fmt.Sprintf("too short: at least %d characters explaining why sharing without consent is necessary", s.opts.MinJustification)
	}
	words := strings.FieldsFunc(strings.ToLower(t), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	distinct := map[string]bool{}
	for _, w := range words {
		if len(w) >= 3 {
			distinct[w] = true
		}
	}
	if len(words) < 6 || len(distinct) < 5 {
		return "lacks substance: describe the concern in your own words"
	}
	if len(distinct)*3 < len(words) {
		return "lacks substance: repeated words are not a justification"
	}
	return ""
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
	return s
}

// postDecision handles POST /v1/decisions.
func (s *Server) postDecision(x *exchange) (int, any, error) {
	d, _, err := s.decide(x)
	if err != nil {
		return 0, nil, err
	}
	body := map[string]any{
		"request_id":      x.id,
		"decision":        d,
		"policy_revision": x.rev.Hash(),
	}
	if x.review != nil {
		body["review"] = map[string]any{"id": x.review.ID, "due": x.review.Due, "status": x.review.Status(s.opts.Now())}
	}
	return http.StatusOK, body, nil
}

// decide decodes, validates and evaluates one decision request, filling
// the audit entry as it goes. It is shared by every endpoint that decides.
func (s *Server) decide(x *exchange) (*policy.Decision, *DecisionRequest, error) {
	x.entry.Kind = audit.KindRejected
	var req DecisionRequest
	if err := s.decodeStrict(x, &req); err != nil {
		return nil, nil, err
	}
	x.entry.Provider, x.entry.Purpose, x.entry.OverrideGround = clip(req.Provider), clip(req.Purpose), req.OverrideGround
	if len(req.Categories) <= maxCategories {
		x.entry.Categories = req.Categories
	}
	prov, subject, err := s.validate(x, &req)
	if err != nil {
		return nil, nil, err
	}

	kctx, cancel := context.WithTimeout(x.ctx, s.opts.KeyTimeout)
	t0 := time.Now()
	pseudo, err := s.deps.Keys.Pseudonym(kctx, subject)
	s.timed(stageKeyStore, t0)
	cancel()
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return nil, nil, err
	}
	x.entry.Subject = pseudo

	var consents []policy.Consent
	if s.deps.Consents != nil {
		consents, err = s.deps.Consents.ForDecision(x.ctx, pseudo)
		if err != nil {
			x.entry.Kind = audit.KindUnavailable
			return nil, nil, fmt.Errorf("consents: %w", err)
		}
	}
	reqPartner, _ := x.rev.Registry.Partner(x.claims.Partner)
	in := &policy.Input{
		// The decision is made as of the instant the request arrived, the
		// instant its audit entry records (to the nanosecond), so that the
		// entry's time is the decision's.
		TimeNS: x.entry.Time.UnixNano(),
		Requester: policy.Requester{
			Partner: x.claims.Partner, Type: string(reqPartner.Type),
			Practitioner: x.claims.Practitioner, Role: x.claims.Role,
		},
		Provider:   policy.Provider{Partner: prov.ID, Type: string(prov.Type), Sensitive: prov.Sensitive},
		Purpose:    req.Purpose,
		Categories: req.Categories,
		Consents:   consents,
		Override:   policy.Override{Ground: req.OverrideGround, Justified: req.OverrideGround != "" && s.weakJustification(req.Justification) == ""},
	}
	// The minimised input (no NHS number, no record content) is kept with
	// the decision, so that it can be replayed against a proposed revision
	// (POST /v1/admin/whatif): the entry holds most of it in its own
	// fields, the rest goes in its input residual. A decision whose input
	// could not be recorded exactly is not made (an internal error, 500;
	// nothing is disclosed).
	if err := decision.RecordInput(&x.entry, in); err != nil {
		x.entry.Kind = audit.KindUnavailable
		return nil, nil, err
	}
	ectx, cancel := context.WithTimeout(x.ctx, s.opts.EvalTimeout)
	t0 = time.Now()
	d, err := s.evaluate(ectx, x, in)
	s.timed(stagePolicy, t0)
	cancel()
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		x.entry.Decision = "deny"
		return nil, nil, err
	}
	if d.Allow && d.Override {
		// Every override is reviewed: without its review item it is not
		// answered (503, nothing disclosed).
		if err := s.openOverrideReview(x, d, &req); err != nil {
			x.entry.Kind, x.entry.Decision = audit.KindUnavailable, "deny"
			return nil, nil, fmt.Errorf("open the override's IG review: %w", err)
		}
	}
	x.entry.Kind = audit.KindDecision
	recordDecision(&x.entry, d)
	return d, &req, nil
}

func recordDecision(e *audit.Entry, d *policy.Decision) {
	e.Decision = "deny"
	if d.Allow {
		e.Decision = "allow"
	}
	e.AllowedCategories = d.Categories
	e.Reasons = d.Reasons
	e.LawfulBasis = d.LawfulBasis
	e.Override = d.Allow && d.Override
	e.Consents = d.Consents
	e.RefusalsOnRecord = d.RefusalsOnRecord
	if d.Protocol != nil {
		e.Protocol, e.ProtocolVersion, e.Rule = d.Protocol.ID, d.Protocol.Version, d.Protocol.Rule
	}
}

// knownFields are the JSON member names of the struct v points to.
func knownFields(v any) map[string]bool {
	t := reflect.TypeOf(v).Elem()
	if k, ok := knownByType.Load(t); ok {
		return k.(map[string]bool)
	}
	known := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	knownByType.Store(t, known)
	return known
}

var knownByType sync.Map // reflect.Type → map[string]bool

// exactNames reports whether every member name of the JSON object at the
// start of raw (valid JSON, as a successful Decode found it) is in known,
// as written. A name with an escape in it is not judged here (false).
func exactNames(raw []byte, known map[string]bool) bool {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return true // not an object: the decoder has said so already
	}
	i++
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] == '}' {
			return true
		}
		if raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
		end := i + 1
		for end < len(raw) && raw[end] != '"' {
			if raw[end] == '\\' {
				return false
			}
			end++
		}
		if end >= len(raw) || !known[string(raw[i+1:end])] {
			return false
		}
		i = skipSpace(raw, end+1) + 1 // past the colon
		i = skipValue(raw, skipSpace(raw, i))
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at i.
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// unknownField names the first member of the JSON object raw that v (a
// pointer to a struct) does not declare. encoding/json reports unknown
// fields only as text, so the check is made here, structurally.
func unknownField(raw []byte, v any) error {
	var m map[string]json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&m); err != nil {
		return jsonError(err)
	}
	known := knownFields(v)
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !known[k] {
			return badRequest(clip(k), "unknown field")
		}
	}
	return nil
}

// revisionMemo is the decision memo of one revision.
type revisionMemo struct {
	rev  *revision.Revision
	m    *decision.Memo
	stop context.CancelFunc // ends its prefill (nil: none)
}

// PrefillTrust makes the server compute, in the background, the
// Trust-level part of every key the active revision's requests can have
// (decision.TrustKeys, decision.Memo.Prefill: at most half of one core),
// now and for each revision that becomes active after, until ctx ends;
// requests go on filling the memo as they come meanwhile. The answers are
// the same with it or without it (policy.trust_prefill).
func (s *Server) PrefillTrust(ctx context.Context) {
	s.memoMu.Lock()
	s.prefill = ctx
	s.memoMu.Unlock()
	follow := func() {
		if rev := s.deps.Revisions.Current(); rev != nil {
			s.memoFor(rev)
		}
	}
	follow()
	go func() {
		// A reload publishes a revision; its prefill starts within a
		// second (or at its first request, whichever is first).
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				follow()
			}
		}
	}()
}

// memoFor is rev's memo, made (and its prefill started) when rev is not
// the one the server holds.
func (s *Server) memoFor(rev *revision.Revision) *revisionMemo {
	if rm := s.memo.Load(); rm != nil && rm.rev == rev {
		return rm
	}
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	rm := s.memo.Load()
	if rm != nil && rm.rev == rev {
		return rm
	}
	if rm != nil && rm.stop != nil {
		rm.stop()
	}
	rm = &revisionMemo{rev: rev, m: decision.NewMemo(rev.Policy, rev.PolicySources(), s.opts.DecisionMemo)}
	s.memo.Store(rm)
	if off, why := rm.m.Off(); off {
		s.log.Info("decisions of this revision are all evaluated (no decision memo)", "revision", rev.Hash(), "why", why)
		return rm
	}
	if s.prefill != nil && s.prefill.Err() == nil {
		ctx, stop := context.WithCancel(s.prefill)
		rm.stop = stop
		keys := decision.TrustKeys(rev.Registry, s.opts.Now())
		go func() {
			defer stop()
			t0 := time.Now()
			n, err := rm.m.Prefill(ctx, keys)
			if err != nil && ctx.Err() == nil {
				s.log.Error("the Trust-level parts of this revision were not all computed ahead; requests compute the rest", "revision", rev.Hash(), "computed", n, "keys", len(keys), "err", err)
				return
			}
			s.log.Info("Trust-level parts computed ahead", "revision", rev.Hash(), "computed", n, "keys", len(keys), "took", time.Since(t0).Round(time.Millisecond), "stopped", ctx.Err() != nil)
		}()
	}
	return rm
}

// evaluate decides in under x's revision: through that revision's memo
// when it is the active one (the Trust-level part remembered, and whole
// decisions unless policy.decision_memo is 0; an exact answer either way:
// decision.Memo), else by evaluating.
func (s *Server) evaluate(ctx context.Context, x *exchange, in *policy.Input) (*policy.Decision, error) {
	rm := s.memo.Load()
	if rm == nil || rm.rev != x.rev {
		if x.rev != s.deps.Revisions.Current() {
			// A request that straddled a reload: not worth a memo.
			return x.rev.Policy.Decide(ctx, in)
		}
		rm = s.memoFor(x.rev)
	}
	d, tripped, err := rm.m.Decide(ctx, in)
	if tripped {
		_, why := rm.m.Off()
		x.log.Error("decision memo turned off for this revision: every decision is evaluated", "revision", x.rev.Hash(), "why", why)
	}
	return d, err
}
