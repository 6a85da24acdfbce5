package demo

import "fmt"

// Hint returns ready-to-paste first requests against a demo gateway at
// listen, minting each token with the demo agency keys under dir.
func Hint(bin, dir, listen string) string {
	mint := func(partner, sub, role string) string {
		return fmt.Sprintf("$(%s token mint --key %s/keys/%s.jwk --sub %s --role %s)", bin, dir, partner, sub, role)
	}
	return fmt.Sprintf(`
The demo Trust is ready. In another terminal, once the gateway says it is listening:

# 1. Exley social care asks the police for child concern notifications
#    (the safeguarding protocol allows it: expect "allow": true)
curl -s -X POST http://%[1]s/v1/decisions \
  -H "Authorization: Bearer %[2]s" \
  -H 'Content-Type: application/json' \
  -d '{"subject":"9990000018","provider":"exley-police","purpose":"safeguarding","categories":["police_concerns","household"]}'

# 2. A teacher at Exley Academy asks Riverside GP for a health summary
#    (no protocol lets a school receive it: expect "allow": false with reasons)
curl -s -X POST http://%[1]s/v1/decisions \
  -H "Authorization: Bearer %[3]s" \
  -H 'Content-Type: application/json' \
  -d '{"subject":"9990000018","provider":"riverside-gp","purpose":"safeguarding","categories":["health_summary"]}'

# Protocols in force, and why the others are not:
curl -s http://%[1]s/v1/protocols -H "Authorization: Bearer %[2]s"

# Each token is single-use and lives 2 minutes: re-run the command to mint a new one.
# Verify the audit trail after stopping the gateway (Ctrl-C):
#   %[4]s audit verify --db %[5]s/data/audit.db

`, listen, mint("exley-csc", "sw-0042", "social_worker"), mint("exley-academy", "t-0007", "teacher"), bin, dir)
}
