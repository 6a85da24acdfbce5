package revision

import (
	"sync/atomic"
	"time"

	"github.com/childrens-trust/trustgate/internal/authz"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/protocol"
	"github.com/childrens-trust/trustgate/internal/registry"
)

// Revision is one immutable, consistent view of the Trust.
type Revision struct {
	Registry  *registry.Registry
	Protocols []protocol.Status
	// Appointments are the appointment files (internal/authz) and Authz
	// the model they make with the registry: who may act as whom.
	Appointments []authz.Status
	Authz        *authz.Model
	Policy       *policy.Revision
	// PolicyFiles are the policy files (tests included) with their
	// SHA-256, sorted by name.
	PolicyFiles []File
	// Samples are the sample decisions the revision was checked with.
	Samples []Sample
	// ActivatedAt is when the revision was published; Source says by what
	// (start-up, reload via SIGHUP, file watch, API).
	ActivatedAt time.Time
	Source      string

	policySrc policy.Sources
}

// File is one source file of a revision.
type File struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Test   bool   `json:"test,omitempty"`
}

// Hash identifies the revision: the policy revision hash, which covers the
// policy sources and the in-force protocols and registry data.
func (r *Revision) Hash() string { return r.Policy.Hash() }

// PolicySources are the policy files the revision was compiled from.
func (r *Revision) PolicySources() policy.Sources { return r.policySrc }

// Holder publishes the current revision. Safe for concurrent use.
type Holder struct{ p atomic.Pointer[Revision] }

// Current returns the active revision, or nil before the first publish.
func (h *Holder) Current() *Revision { return h.p.Load() }

// Publish makes r the active revision for every request that starts after.
func (h *Holder) Publish(r *Revision) { h.p.Store(r) }
