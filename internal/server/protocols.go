package server

import (
	"net/http"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/protocol"
)

// protocolView is one protocol as listed to partners.
type protocolView struct {
	ID            string   `json:"id"`
	Version       string   `json:"version"`
	Title         string   `json:"title"`
	File          string   `json:"file"`
	Digest        string   `json:"digest"`
	InForce       bool     `json:"in_force"`
	Signatories   []string `json:"signatories"`
	Purposes      []string `json:"purposes"`
	EffectiveFrom string   `json:"effective_from,omitempty"`
	ReviewBy      string   `json:"review_by,omitempty"`
	Expires       string   `json:"expires,omitempty"`
	Reasons       []string `json:"reasons"`
	Warnings      []string `json:"warnings"`
	// Withdrawals are the signatories' verified withdrawals (who, from when).
	Withdrawals []protocolWithdrawalView `json:"withdrawals"`
	// Signatures is the state of each signature on file (partner, kid,
	// ok, reason); Rules the protocol's rules as written.
	Signatures []protocol.SignatureResult `json:"signatures"`
	Rules      []protocol.Rule            `json:"rules"`
}

// listProtocols handles GET /v1/protocols: every protocol the gateway
// knows, in force or not, with the exact reasons.
func (s *Server) listProtocols(x *exchange) (int, any, error) {
	x.entry.Kind = audit.KindAccess
	out := make([]protocolView, 0, len(x.rev.Protocols))
	for _, st := range x.rev.Protocols {
		v := protocolView{File: baseName(st.File), Digest: st.Digest, InForce: st.InForce, Reasons: st.Reasons, Warnings: st.Warnings, Withdrawals: protocolWithdrawals(st),
			Signatures: nonNil(st.Signatures), Rules: []protocol.Rule{}}
		if p := st.Protocol; p != nil {
			v.ID, v.Version, v.Title, v.Signatories, v.Purposes = p.ID, p.Version, p.Title, p.Signatories, p.Purposes
			v.Rules = nonNil(p.Rules)
			v.EffectiveFrom, v.ReviewBy, v.Expires = p.EffectiveFrom.String(), p.ReviewBy.String(), p.Expires.String()
		}
		out = append(out, v)
	}
	return http.StatusOK, map[string]any{"request_id": x.id, "policy_revision": x.rev.Hash(), "protocols": out}, nil
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
