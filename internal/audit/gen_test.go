package audit_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/childrens-trust/trustgate/internal/audit"
)

// genBase is the time of the first generated entry.
var genBase = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// genChild is the pseudonym of generated child c (synthetic: a hex
// string, as the gateway's HMAC pseudonyms are).
func genChild(c int) string { return fmt.Sprintf("%064x", uint64(c+1)*0x9e3779b97f4a7c15) }

// genEntry returns a varied synthetic entry: every kind, outcome and
// override, a dozen children, eight practitioners in five agencies, and
// times about a minute apart but not in order (requests overlap).
func genEntry(r *rand.Rand, i int) audit.Entry {
	partners := []string{"exley-csc", "exley-police", "riverside-gp", "exley-academy", "exley-yos"}
	purposes := []string{"safeguarding", "child_protection", "early_help", "education_welfare"}
	protocols := []string{"isp-safeguarding", "isp-early-help", "isp-youth-justice"}
	e := audit.Entry{
		Time:      genBase.Add(time.Duration(i)*time.Minute + time.Duration(r.IntN(241)-120)*time.Second),
		RequestID: fmt.Sprintf("req-%06d", i),
		Method:    "POST", Path: "/v1/decisions", Status: 200,
		Requester:    partners[r.IntN(len(partners))],
		Practitioner: fmt.Sprintf("prac-%d", r.IntN(8)),
		Role:         "social_worker",
		TokenID:      fmt.Sprintf("jti-%d", i),
	}
	switch k := r.IntN(100); {
	case k < 55:
		e.Kind = audit.KindDecision
		e.Subject = genChild(r.IntN(12))
		e.Provider = partners[r.IntN(len(partners))]
		e.Purpose = purposes[r.IntN(len(purposes))]
		e.Categories = []string{"household", "police_concerns"}
		e.Decision = []string{"allow", "deny"}[r.IntN(2)]
		if e.Decision == "allow" {
			e.Protocol, e.ProtocolVersion, e.Rule = protocols[r.IntN(len(protocols))], "3", "rule-1"
			e.LawfulBasis = "UK GDPR 6(1)(e)"
		}
		if r.IntN(6) == 0 {
			e.OverrideGround = "risk_of_significant_harm"
			if e.Decision == "allow" {
				e.Override = true
				e.ReviewID = fmt.Sprintf("rev-%d", i)
			}
		}
	case k < 65:
		e.Kind, e.Status = audit.KindRejected, 400
		e.Error = "purpose: required"
		if r.IntN(2) == 0 {
			e.Subject = genChild(r.IntN(12))
		}
	case k < 72:
		e.Kind, e.Status = audit.KindAuthFailure, 401
		e.Requester, e.Practitioner, e.Role = "unverified:"+e.Requester, "", ""
	case k < 80:
		e.Kind, e.Method, e.Path = audit.KindAccess, "GET", "/v1/protocols"
	case k < 86:
		e.Kind = audit.KindConsent
		e.Subject = genChild(r.IntN(12))
		e.ConsentID, e.ConsentAction = fmt.Sprintf("con-%d", i), audit.ConsentGiven
	case k < 90:
		e.Kind = audit.KindReview
		e.ReviewID, e.ReviewOutcome = fmt.Sprintf("rev-%d", r.IntN(max(i, 1))), "upheld"
	case k < 97:
		e.Kind = audit.KindDisclosure
		e.Subject = genChild(r.IntN(12))
		e.Provider = partners[r.IntN(len(partners))]
		e.Purpose = purposes[r.IntN(len(purposes))]
	default:
		e.Kind, e.Status = audit.KindUnavailable, 503
		e.Subject = genChild(r.IntN(12))
	}
	return e
}
