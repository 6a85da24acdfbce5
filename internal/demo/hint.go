package demo

import "fmt"

// Hint returns ready-to-paste first requests against a demo gateway at
// listen, minting each token with the demo agency keys under dir.
func Hint(bin, dir, listen string) string {
	mint := func(partner, sub, role string) string {
		return fmt.Sprintf("$(%s token mint --key %s/keys/%s.jwk --sub %s --role %s)", bin, dir, partner, sub, role)
	}
	return fmt.Sprintf(`
The demo Trust is ready: the gateway and a reference provider for each demo
agency start in this terminal. In another terminal, once it says it is listening:

# 1. Exley social care asks the police for a child's concern notifications.
#    The safeguarding protocol allows it, so the gateway fetches the record
#    from the police's provider and answers with only what the rule allows:
#    police_concerns without officer_in_case or intelligence_notes, household
#    without address_history. The police are notified of the access (watch
#    this terminal: "access notification" from provider=exley-police).
curl -s -X POST http://%[1]s/v1/share-requests \
  -H "Authorization: Bearer %[2]s" \
  -H 'Content-Type: application/json' \
  -d '{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns","household"]}'

# 2. A teacher at Exley Academy asks Riverside GP for a health summary.
#    No protocol lets a school receive it: 403 with the decision and its
#    reasons; nothing is fetched.
curl -s -X POST http://%[1]s/v1/share-requests \
  -H "Authorization: Bearer %[3]s" \
  -H 'Content-Type: application/json' \
  -d '{"subject":"9990000018","provider":"riverside-gp","purpose":"safeguarding","categories":["health_summary"]}'

# 3. The police read their access notifications (also pushed to their webhook),
#    among them the match with social care: both recorded a concern about
#    the child (the demo agencies sync their caseloads at start).
curl -s http://%[1]s/v1/notifications -H "Authorization: Bearer %[4]s"

# 4. Who else is involved with the child? The social worker, involved
#    herself, sees social care, the police and the GP — not CAMHS, a
#    shielded service (docs/index.md walks through the whole index).
curl -s http://%[1]s/v1/subjects/9990000018/involvements \
  -H "Authorization: Bearer %[2]s"

# Protocols in force, and why the others are not:
curl -s http://%[1]s/v1/protocols -H "Authorization: Bearer %[2]s"

# Each token is single-use and lives 2 minutes: re-run the command to mint a new one.
# Verify the audit trail after stopping the gateway (Ctrl-C):
#   %[5]s audit verify --db %[6]s/data/audit.db

`, listen, mint("exley-csc", "sw-0042", "social_worker"), mint("exley-academy", "t-0007", "teacher"),
		mint("exley-police", "ppu-0003", "police_officer"), bin, dir)
}

// ConsolePerson is a demo person whose console sign-in link `demo hint`
// prints (docs/console.md).
type ConsolePerson struct {
	Label, Partner, Practitioner, Role string
}

// ConsolePeople are the demo people of the console walk-through: an IG
// lead who works the review queue and the protocols, an auditor who
// answers "who saw what about this child", and the lead professional of
// the README's child, who sees the team around it.
var ConsolePeople = []ConsolePerson{
	{"IG lead, Exley children's social care", "exley-csc", "ig-0001", "ig_lead"},
	{"Auditor for the Trust, appointed through Exley children's social care", "exley-csc", "auditor-07", "auditor"},
	{"Lead professional of child 999 000 0018, a social worker of Exley children's social care", "exley-csc", "sw-0042", "social_worker"},
}
