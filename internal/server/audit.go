package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// AuditQuery is what the auditors' endpoints need of the audit log
// (implemented by *audit.Log). Every method reads a consistent state of
// the log; none writes an entry.
type AuditQuery interface {
	LatestCheckpoint(ctx context.Context) (*audit.Checkpoint, error)
	CheckpointAt(ctx context.Context, size uint64) (*audit.Checkpoint, error)
	InclusionProof(ctx context.Context, seq, size uint64) (*audit.InclusionProof, error)
	ConsistencyProof(ctx context.Context, from, to uint64) (*audit.ConsistencyProof, error)
	Query(ctx context.Context, q audit.Query) (*audit.Page, error)
	Stats(ctx context.Context, q audit.StatsQuery) (*audit.Stats, error)
	AccessReport(ctx context.Context, subject string, cp *audit.Checkpoint, withhold bool) (*audit.AccessReport, error)
	SnapshotStream(ctx context.Context, start func(size int64) (io.Writer, error)) (int64, error)
}

// Checkpointer signs checkpoints of the audit log on demand (implemented
// by *audit.Checkpointer).
type Checkpointer interface {
	// Checkpoint returns a stored, signed checkpoint covering every entry
	// committed so far, signing one if needed.
	Checkpoint(ctx context.Context) (*audit.Checkpoint, error)
	Status() audit.CheckpointStatus
}

// Roles of the audit endpoints.
const (
	AuditorRole = "auditor"
)

// auditRoutes registers the auditors' endpoints (docs/auditing.md).
func (s *Server) auditRoutes(v1 *mux.Router) {
	if s.deps.AuditQuery == nil || s.deps.Checkpoints == nil {
		return
	}
	v1.Handle("/audit/checkpoints/latest", s.audited(s.latestCheckpoint)).Methods(http.MethodGet)
	v1.Handle("/audit/proofs/inclusion", s.audited(s.inclusionProof)).Methods(http.MethodGet)
	v1.Handle("/audit/proofs/consistency", s.audited(s.consistencyProof)).Methods(http.MethodGet)
	v1.Handle("/audit/entries", s.audited(s.auditEntries)).Methods(http.MethodGet)
	v1.Handle("/audit/stats", s.audited(s.auditStats)).Methods(http.MethodGet)
	v1.Handle("/audit/snapshot", s.audited(s.auditSnapshot)).Methods(http.MethodGet)
	v1.Handle("/subjects/{nhs}/access-report", s.audited(s.accessReport)).Methods(http.MethodGet)
	s.witnessRoutes(v1) // witness.go
}

// queryParams checks that the query string holds only allowed names,
// each at most once.
func queryParams(x *exchange, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	for k, vs := range x.r.URL.Query() {
		if !slices.Contains(allowed, k) {
			return nil, badRequest(clip(k), "unknown query parameter ("+strings.Join(allowed, ", ")+")")
		}
		if len(vs) != 1 {
			return nil, badRequest(k, "give it once")
		}
		if len(vs[0]) > 256 {
			return nil, badRequest(k, "longer than 256 characters")
		}
		out[k] = vs[0]
	}
	return out, nil
}

func uintParam(p map[string]string, field string, required bool) (uint64, error) {
	v, ok := p[field]
	if !ok || v == "" {
		if required {
			return 0, badRequest(field, "required")
		}
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, badRequest(field, "must be a whole number of at least 1")
	}
	return n, nil
}

// timeParam parses an RFC 3339 time or a date (YYYY-MM-DD, midnight UTC).
func timeParam(p map[string]string, field string) (time.Time, error) {
	v := p[field]
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, badRequest(field, "must be an RFC 3339 time (2026-11-22T09:00:00Z) or a date (2026-11-22)")
}

// auditError maps the audit log's errors to answers; others pass on to
// classify.
func auditError(x *exchange, err error) error {
	var pe *audit.ProofError
	switch {
	case errors.As(err, &pe):
		return badRequest(pe.Field, pe.Reason)
	case errors.Is(err, audit.ErrNoCheckpoint):
		return notFound("no checkpoint has been signed yet")
	case errors.Is(err, audit.ErrReportTooLarge):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "too_large", Reason: fmt.Sprintf("the child has more than %d entries: ask for an export", audit.MaxReportEntries), Kind: audit.KindRejected}
	case errors.Is(err, audit.ErrClosed), errors.Is(err, audit.ErrUnavailable):
		x.entry.Kind = audit.KindUnavailable
		return &apiError{Status: http.StatusServiceUnavailable, Code: "audit_unavailable", Reason: "the audit log cannot be read right now", Kind: audit.KindUnavailable}
	default:
		x.entry.Kind = audit.KindUnavailable
		return err
	}
}

// checkpointView is a checkpoint as answered: the compact JWS (verify
// it against /.well-known/jwks.json) and its payload, read for you.
type checkpointView struct {
	JWS   string    `json:"jws"`
	Log   string    `json:"log"`
	Size  uint64    `json:"size"`
	Root  string    `json:"root"`
	Head  string    `json:"head"`
	Time  time.Time `json:"time"`
	KeyID string    `json:"kid"`
}

func viewCheckpoint(cp *audit.Checkpoint) checkpointView {
	return checkpointView{JWS: cp.JWS, Log: cp.Log, Size: cp.Size, Root: cp.Root, Head: cp.Head, Time: cp.Time, KeyID: cp.KeyID}
}

// covering returns a signed checkpoint covering entry seq (0: the latest,
// signing one if the log grew since).
func (s *Server) covering(x *exchange, seq uint64) (*audit.Checkpoint, error) {
	cp, err := s.deps.AuditQuery.LatestCheckpoint(x.ctx)
	if err == nil && seq != 0 && cp.Size >= seq {
		return cp, nil
	}
	if err != nil && !errors.Is(err, audit.ErrNoCheckpoint) {
		return nil, auditError(x, err)
	}
	ctx, cancel := context.WithTimeout(x.ctx, s.opts.KeyTimeout)
	defer cancel()
	cp, err = s.deps.Checkpoints.Checkpoint(ctx)
	if err != nil {
		if errors.Is(err, audit.ErrNoCheckpoint) {
			return nil, notFound("the audit log is empty: nothing to checkpoint yet")
		}
		x.entry.Kind = audit.KindUnavailable
		return nil, err // keys.ErrUnavailable → 503
	}
	return cp, nil
}

// latestCheckpoint handles GET /v1/audit/checkpoints/latest: the newest
// signed checkpoint (any authenticated partner may keep a copy: it holds
// only a size and hashes) and how far its copies outside the gateway got.
func (s *Server) latestCheckpoint(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	if _, err := queryParams(x); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	cp, err := s.deps.AuditQuery.LatestCheckpoint(x.ctx)
	if errors.Is(err, audit.ErrNoCheckpoint) {
		cp, err = s.covering(x, 0)
	}
	if err != nil {
		return 0, nil, auditError(x, err)
	}
	return http.StatusOK, map[string]any{"request_id": x.id, "checkpoint": viewCheckpoint(cp), "published": s.deps.Checkpoints.Status().Destinations}, nil
}

// inclusionProof handles GET /v1/audit/proofs/inclusion?seq=&size=: the
// proof that entry seq is in the tree of size entries. Without size, the
// proof leads to a signed checkpoint covering seq (signed now if none
// does yet), which the answer carries.
func (s *Server) inclusionProof(x *exchange) (int, any, error) {
	if err := requireRole(x, "read audit proofs", AuditorRole, ReviewRole); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindRejected
	p, err := queryParams(x, "seq", "size")
	if err != nil {
		return 0, nil, err
	}
	seq, err := uintParam(p, "seq", true)
	if err != nil {
		return 0, nil, err
	}
	size, err := uintParam(p, "size", false)
	if err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	body := map[string]any{"request_id": x.id}
	if size == 0 {
		cp, err := s.covering(x, seq)
		if err != nil {
			return 0, nil, err
		}
		size = cp.Size
		body["checkpoint"] = viewCheckpoint(cp)
	}
	proof, err := s.deps.AuditQuery.InclusionProof(x.ctx, seq, size)
	if err != nil {
		return 0, nil, auditError(x, err)
	}
	body["proof"] = proof
	return http.StatusOK, body, nil
}

// consistencyProof handles GET /v1/audit/proofs/consistency?from=&to=:
// the proof that the tree of from entries is a prefix of the tree of to
// entries. to defaults to the latest checkpoint; an explicit to must be
// the size of a signed checkpoint; the answer carries that checkpoint,
// and from's (from_checkpoint) when one was signed at that size, so its
// roots are always signed ones. Any authenticated partner may ask: it
// holds only hashes.
func (s *Server) consistencyProof(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	p, err := queryParams(x, "from", "to")
	if err != nil {
		return 0, nil, err
	}
	from, err := uintParam(p, "from", true)
	if err != nil {
		return 0, nil, err
	}
	to, err := uintParam(p, "to", false)
	if err != nil {
		return 0, nil, err
	}
	body := map[string]any{"request_id": x.id}
	if to == 0 {
		x.entry.Kind = audit.KindAccess
		cp, err := s.covering(x, from)
		if err != nil {
			return 0, nil, err
		}
		to = cp.Size
		body["checkpoint"] = viewCheckpoint(cp)
	} else {
		// An explicit to must be a signed checkpoint's size: the answer
		// names the checkpoint whose root the proof leads to.
		cp, err := s.deps.AuditQuery.CheckpointAt(x.ctx, to)
		if errors.Is(err, audit.ErrNoCheckpoint) {
			return 0, nil, badRequest("to", fmt.Sprintf("%d is not the size of a signed checkpoint (GET /v1/audit/checkpoints/latest; omit to for the latest)", to))
		}
		if err != nil {
			return 0, nil, auditError(x, err)
		}
		x.entry.Kind = audit.KindAccess
		body["checkpoint"] = viewCheckpoint(cp)
	}
	// The old size's checkpoint too, when one was signed at it.
	if cp, err := s.deps.AuditQuery.CheckpointAt(x.ctx, from); err == nil {
		body["from_checkpoint"] = viewCheckpoint(cp)
	}
	proof, err := s.deps.AuditQuery.ConsistencyProof(x.ctx, from, to)
	if err != nil {
		return 0, nil, auditError(x, err)
	}
	body["proof"] = proof
	return http.StatusOK, body, nil
}

// auditFilter reads the filters shared by the entries and stats queries.
func (s *Server) auditFilter(x *exchange, p map[string]string) (audit.Filter, error) {
	var f audit.Filter
	reg := x.rev.Registry
	if v := p["subject"]; v != "" {
		n, err := nhsField("subject", v)
		if err != nil {
			return f, err
		}
		if f.Subject, err = s.pseudonym(x, n); err != nil {
			return f, err
		}
	}
	for _, c := range []struct {
		field string
		dst   *string
	}{{"requester", &f.Requester}, {"provider", &f.Provider}} {
		if v := p[c.field]; v != "" {
			if _, ok := reg.Partner(v); !ok {
				return f, badRequest(c.field, fmt.Sprintf("%q is not a partner of the Trust", clip(v)))
			}
			*c.dst = v
		}
	}
	if v := p["purpose"]; v != "" {
		if !reg.HasPurpose(v) {
			return f, badRequest("purpose", fmt.Sprintf("%q is not a purpose of the Trust", clip(v)))
		}
		f.Purpose = v
	}
	f.Practitioner, f.Protocol = p["practitioner"], p["protocol"]
	if v := p["kind"]; v != "" {
		if !slices.Contains(audit.FilterKinds, v) {
			return f, badRequest("kind", fmt.Sprintf("%q is not one of %s", clip(v), strings.Join(audit.FilterKinds, ", ")))
		}
		f.Kind = v
	}
	var err error
	if f.From, err = timeParam(p, "from"); err != nil {
		return f, err
	}
	if f.To, err = timeParam(p, "to"); err != nil {
		return f, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, badRequest("to", "must be after from")
	}
	return f, nil
}

// auditEntries handles GET /v1/audit/entries: the entries matching every
// filter given, newest first, a page at a time (cursor = next_cursor of
// the previous page). The subject is an NHS number; the gateway
// pseudonymises it and looks the pseudonym up.
func (s *Server) auditEntries(x *exchange) (int, any, error) {
	if err := requireRole(x, "query the audit log", AuditorRole); err != nil {
		return 0, nil, err
	}
	if err := requireTrustWide(x, "query the audit log"); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindRejected
	p, err := queryParams(x, "subject", "requester", "practitioner", "provider", "purpose", "protocol", "kind", "from", "to", "cursor", "limit")
	if err != nil {
		return 0, nil, err
	}
	f, err := s.auditFilter(x, p)
	if err != nil {
		return 0, nil, err
	}
	before, err := uintParam(p, "cursor", false)
	if err != nil {
		return 0, nil, err
	}
	limit, err := uintParam(p, "limit", false)
	if err != nil {
		return 0, nil, err
	}
	if limit > audit.MaxPage {
		return 0, nil, badRequest("limit", fmt.Sprintf("at most %d", audit.MaxPage))
	}
	x.entry.Kind = audit.KindAccess
	page, err := s.deps.AuditQuery.Query(x.ctx, audit.Query{Filter: f, Before: before, Limit: int(limit)})
	if err != nil {
		return 0, nil, auditError(x, err)
	}
	body := map[string]any{"request_id": x.id, "size": page.Size, "entries": nonNil(page.Entries)}
	if page.Next != 0 {
		body["next_cursor"] = strconv.FormatUint(page.Next, 10)
	}
	return http.StatusOK, body, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// auditStats handles GET /v1/audit/stats?from=&to=&by=: oversight
// figures for the safeguarding partnership.
func (s *Server) auditStats(x *exchange) (int, any, error) {
	if err := requireRole(x, "read audit figures", AuditorRole, ReviewRole); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindRejected
	p, err := queryParams(x, "from", "to", "by")
	if err != nil {
		return 0, nil, err
	}
	by := p["by"]
	if !slices.Contains(audit.StatsGroupings, by) {
		return 0, nil, badRequest("by", fmt.Sprintf("required: one of %s", strings.Join(audit.StatsGroupings, ", ")))
	}
	f, err := s.auditFilter(x, map[string]string{"from": p["from"], "to": p["to"]})
	if err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	st, err := s.deps.AuditQuery.Stats(x.ctx, audit.StatsQuery{From: f.From, To: f.To, By: by, Now: s.opts.Now(), ReviewWithin: s.opts.ReviewWithin})
	if err != nil {
		return 0, nil, auditError(x, err)
	}
	return http.StatusOK, map[string]any{"request_id": x.id, "stats": st, "review_within_hours": s.opts.ReviewWithin.Hours()}, nil
}

// accessReport handles GET /v1/subjects/{nhs}/access-report: every entry
// about the child with its inclusion proof against a signed checkpoint
// (signed now if the latest does not cover the log). With
// ?withhold_practitioners=true the practitioners are removed (the
// family's copy).
func (s *Server) accessReport(x *exchange) (int, any, error) {
	if err := requireRole(x, "read access reports", AuditorRole, ReviewRole); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindRejected
	p, err := queryParams(x, "withhold_practitioners")
	if err != nil {
		return 0, nil, err
	}
	withhold := false
	switch p["withhold_practitioners"] {
	case "", "false":
	case "true":
		withhold = true
	default:
		return 0, nil, badRequest("withhold_practitioners", "must be true or false")
	}
	n, err := nhsField("nhs", mux.Vars(x.r)["nhs"])
	if err != nil {
		return 0, nil, err
	}
	pseudo, err := s.pseudonym(x, n)
	if err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	cp, err := s.covering(x, 0)
	if err != nil {
		return 0, nil, err
	}
	// An appointment scoped to one agency does not name other agencies'
	// practitioners: only a Trust-wide one sees who they were.
	withhold = withhold || !x.grant.TrustWide()
	rep, err := s.deps.AuditQuery.AccessReport(x.ctx, pseudo, cp, withhold)
	if err != nil {
		return 0, nil, auditError(x, err)
	}
	return http.StatusOK, map[string]any{"request_id": x.id, "report": rep}, nil
}

// auditSnapshot handles GET /v1/audit/snapshot: a consistent copy of the
// whole log file, streamed from one read transaction while the gateway
// keeps appending (Content-Length is the exact size). Verify it offline
// with `trustgate audit verify`.
func (s *Server) auditSnapshot(x *exchange) (int, any, error) {
	return s.auditorCopy(x, "copy the audit log", func(sctx context.Context, w http.ResponseWriter, status int) {
		_, err := s.deps.AuditQuery.SnapshotStream(sctx, func(size int64) (io.Writer, error) {
			h := w.Header()
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Disposition", `attachment; filename="audit-snapshot.db"`)
			h.Set("Content-Length", strconv.FormatInt(size, 10))
			h.Set("Cache-Control", "no-store")
			h.Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(status)
			return w, nil
		})
		if err != nil {
			// The status is sent; a short body is all the client sees
			// (Content-Length tells it the copy is incomplete).
			x.log.Error("audit snapshot stream failed", "err", err)
		}
	})
}

// auditorCopy answers a copy of the gateway's files (the audit log, the
// data directory), which only an auditor appointed Trust-wide may take,
// streamed by write within audit.snapshot_timeout (its context and the
// answer's write deadline).
func (s *Server) auditorCopy(x *exchange, what string, write func(ctx context.Context, w http.ResponseWriter, status int)) (int, any, error) {
	if err := requireRole(x, what, AuditorRole); err != nil {
		return 0, nil, err
	}
	if err := requireTrustWide(x, what); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindRejected
	if _, err := queryParams(x); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	ctx := x.r.Context()
	return http.StatusOK, streamBody(func(w http.ResponseWriter, status int) {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.SnapshotTimeout))
		sctx, cancel := context.WithTimeout(ctx, s.opts.SnapshotTimeout)
		defer cancel()
		write(sctx, w, status)
	}), nil
}

// streamBody is an answer written by a function instead of as JSON (the
// audited wrapper records the entry first, as for any answer).
type streamBody func(w http.ResponseWriter, status int)
