package app_test

import (
	"net/http"
	"testing"
)

// TestContractOfEveryAnswer makes the answers no other end-to-end test
// makes, so that each documented operation has a success and an error
// answer validated against the served OpenAPI document (contractCoverage):
// an involvement changed and ended, an early help team left and its
// episode closed, a review read, and the refusals of each.
func TestContractOfEveryAnswer(t *testing.T) {
	g := startGateway(t, nil)
	csc := func() string { return g.as("exley-csc", "sw-0042", "social_worker") }
	gp := func() string { return g.as("riverside-gp", "gp-0101", "gp") }
	ehw := func() string { return g.as("exley-csc", "ehw-0011", "early_help_worker") }

	want(t, g.do(http.MethodGet, "/v1/openapi.json", "", nil), 200)
	for _, path := range []string{"/v1/matches", "/v1/policies", "/v1/protocols"} {
		want(t, g.do(http.MethodGet, path, "", nil), 401)
	}

	// An involvement: changed by its agency only, ended, then no longer changed.
	r := want(t, g.send(http.MethodPost, "/v1/involvements", csc(), involvementBody(ixChild2, "sw-0042", "child_in_need", true)), 201)
	inv := r.Body["involvement"].(map[string]any)["id"].(string)
	want(t, g.send(http.MethodPatch, "/v1/involvements/"+inv, csc(), map[string]any{"phone": "01632 960000"}), 200)
	want(t, g.send(http.MethodPatch, "/v1/involvements/"+inv, gp(), map[string]any{"phone": "01632 960001"}), 404)
	want(t, g.send(http.MethodPost, "/v1/involvements/"+inv+"/end", gp(), map[string]any{}), 404)
	want(t, g.send(http.MethodPost, "/v1/involvements/"+inv+"/end", csc(), map[string]any{}), 200)
	want(t, g.send(http.MethodPatch, "/v1/involvements/"+inv, csc(), map[string]any{"phone": "01632 960002"}), 409)

	// An early help episode: a member joins and leaves, the episode closes.
	r = want(t, g.send(http.MethodPost, "/v1/early-help", ehw(), map[string]any{"subject": ixChild2}), 201)
	ep := r.Body["episode"].(map[string]any)["id"].(string)
	want(t, g.send(http.MethodPost, "/v1/early-help/"+ep+"/team", ehw(), map[string]any{"partner": "riverside-gp", "practitioner": "gp-0101", "role": "gp"}), 200)
	want(t, g.send(http.MethodPost, "/v1/early-help/"+ep+"/team", ehw(), map[string]any{"partner": "riverside-gp"}), 400)
	want(t, g.send(http.MethodPost, "/v1/early-help/"+ep+"/team/leave", ehw(), map[string]any{"partner": "riverside-gp", "practitioner": "gp-0101"}), 200)
	want(t, g.send(http.MethodPost, "/v1/early-help/"+ep+"/team/leave", ehw(), map[string]any{"partner": "exley-police", "practitioner": "ppu-0003"}), 404)
	want(t, g.send(http.MethodPost, "/v1/early-help/"+ep+"/close", ehw(), map[string]any{}), 200)
	want(t, g.send(http.MethodPost, "/v1/early-help/"+ep+"/close", ehw(), map[string]any{}), 409)

	// A review: read by the IG lead; an unknown one, and a practitioner's summary, refused.
	r = decisionWith(t, g)
	rev := r.Body["review"].(map[string]any)["id"].(string)
	ig := func() string { return g.as("exley-csc", "ig-0001", "ig_lead") }
	want(t, g.do(http.MethodGet, "/v1/reviews/"+rev, ig(), nil), 200)
	want(t, g.do(http.MethodGet, "/v1/reviews/rev-00000000000000000000", ig(), nil), 404)
	want(t, g.do(http.MethodGet, "/v1/reviews/summary", csc(), nil), 403)
}

// decisionWith makes an override decision, which opens a review item.
func decisionWith(t *testing.T, g *gateway) response {
	t.Helper()
	return want(t, g.decide("exley-csc", "social_worker", map[string]any{
		"subject": "9990000018", "provider": "riverside-gp", "purpose": "safeguarding", "categories": []string{"health_summary"},
		"override_ground": "risk_of_significant_harm", "justification": "Bruising seen at school and an unexplained absence; strategy discussion held today.",
	}), 200)
}
