package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/witness"
)

// Notary makes the C2SP note form of signed checkpoints and collects
// witnesses' cosignatures of them (implemented by *witness.Notary).
type Notary interface {
	Note(ctx context.Context, cp *audit.Checkpoint) ([]byte, error)
	AddCosignatures(ctx context.Context, msg []byte) (size uint64, witnesses []string, err error)
	LogKey(ctx context.Context) (string, error)
	Origin() string
	Witnesses() []witness.Witness
}

// maxCosignatureBytes bounds a submitted note: the checkpoint and at most
// 100 signature lines.
const maxCosignatureBytes = 32 << 10

// witnessRoutes registers the checkpoint note and its cosignatures
// (docs/auditing.md §4b). Any authenticated partner may read them (like
// the JWS checkpoint, they hold only a size and a hash) and may deliver a
// witness's cosignature: what is trusted is the cosignature itself, which
// must verify with a witness key the Trust configures (audit.witnesses).
func (s *Server) witnessRoutes(v1 *mux.Router) {
	if s.deps.Notary == nil {
		return
	}
	v1.Handle("/audit/checkpoints/note", s.audited(s.checkpointNote)).Methods(http.MethodGet)
	v1.Handle("/audit/checkpoints/cosignatures", s.audited(s.postCosignatures)).Methods(http.MethodPost)
	v1.Handle("/audit/witnesses", s.audited(s.listWitnesses)).Methods(http.MethodGet)
}

// checkpointNote handles GET /v1/audit/checkpoints/note[?size=N]: the
// signed checkpoint of size N (default: the latest) as a signed note,
// with every cosignature collected for it (text/plain).
func (s *Server) checkpointNote(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	p, err := queryParams(x, "size")
	if err != nil {
		return 0, nil, err
	}
	size, err := uintParam(p, "size", false)
	if err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	var cp *audit.Checkpoint
	if size != 0 {
		cp, err = s.deps.AuditQuery.CheckpointAt(x.ctx, size)
		if errors.Is(err, audit.ErrNoCheckpoint) {
			x.entry.Kind = audit.KindRejected
			return 0, nil, notFound(fmt.Sprintf("no checkpoint of size %d was signed (GET /v1/audit/checkpoints/latest names the newest)", size))
		}
	} else if cp, err = s.deps.AuditQuery.LatestCheckpoint(x.ctx); errors.Is(err, audit.ErrNoCheckpoint) {
		cp, err = s.covering(x, 0)
	}
	if err != nil {
		return 0, nil, auditError(x, err)
	}
	ctx, cancel := context.WithTimeout(x.ctx, s.opts.KeyTimeout)
	defer cancel()
	text, err := s.deps.Notary.Note(ctx, cp)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err // keys.ErrUnavailable → 503
	}
	return http.StatusOK, streamBody(func(w http.ResponseWriter, status int) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Checkpoint-Size", strconv.FormatUint(cp.Size, 10))
		w.WriteHeader(status)
		_, _ = w.Write(text)
	}), nil
}

// postCosignatures handles POST /v1/audit/checkpoints/cosignatures: a
// checkpoint note as a witness returns it (text/plain: the note with the
// witness's cosignature/v1 line); every cosignature in it that verifies
// with a configured witness's key is stored.
func (s *Server) postCosignatures(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	if _, err := queryParams(x); err != nil {
		return 0, nil, err
	}
	if mt, _, err := mime.ParseMediaType(x.r.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return 0, nil, &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Field: "Content-Type", Reason: "must be text/plain (a signed note)", Kind: audit.KindRejected}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(nil, x.r.Body, maxCosignatureBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, nil, badRequest("body", fmt.Sprintf("larger than %d bytes", maxCosignatureBytes))
		}
		return 0, nil, badRequest("body", "could not be read")
	}
	size, names, err := s.deps.Notary.AddCosignatures(x.ctx, raw)
	var we *witness.Error
	switch {
	case errors.As(err, &we):
		status, code := http.StatusUnprocessableEntity, "bad_cosignature"
		switch {
		case errors.Is(we, witness.ErrMalformed):
			status, code = http.StatusBadRequest, "invalid_request"
		case errors.Is(we, witness.ErrWrongTree):
			code = "wrong_tree"
		case errors.Is(we, witness.ErrUnknownWitness):
			status, code = http.StatusForbidden, "unknown_witness"
		}
		return 0, nil, &apiError{Status: status, Code: code, Field: we.Field, Reason: we.Kind.Error() + ": " + we.Reason, Kind: audit.KindRejected}
	case err != nil:
		return 0, nil, auditError(x, err)
	}
	x.entry.Kind = audit.KindAccess
	return http.StatusOK, map[string]any{"request_id": x.id, "size": size, "cosigned_by": names}, nil
}

// listWitnesses handles GET /v1/audit/witnesses: the notes' origin, the
// gateway's note verifier key, and the witnesses whose cosignatures are
// collected.
func (s *Server) listWitnesses(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindRejected
	if _, err := queryParams(x); err != nil {
		return 0, nil, err
	}
	x.entry.Kind = audit.KindAccess
	ctx, cancel := context.WithTimeout(x.ctx, s.opts.KeyTimeout)
	defer cancel()
	key, err := s.deps.Notary.LogKey(ctx)
	if err != nil {
		x.entry.Kind = audit.KindUnavailable
		return 0, nil, err
	}
	ws := s.deps.Notary.Witnesses()
	if ws == nil {
		ws = []witness.Witness{}
	}
	return http.StatusOK, map[string]any{"request_id": x.id, "origin": s.deps.Notary.Origin(), "log_key": key, "witnesses": ws}, nil
}
