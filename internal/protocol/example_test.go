package protocol_test

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/childrens-trust/trustgate/internal/protocol"
)

func ExampleParse() {
	doc, err := os.ReadFile("testdata/safeguarding.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := protocol.Parse(doc)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.ID, "version", p.Version, "in force from", p.EffectiveFrom, "until", p.Expires)
	for _, r := range p.Rules {
		fmt.Printf("%s: consent %s\n", r.ID, r.Consent)
	}
	// Output:
	// isp-test-safeguarding version 3 in force from 2026-01-01 until 2028-01-01
	// health-to-social-care: consent overridable
	// social-care-to-school-dsl: consent not_required
	// police-to-social-care: consent not_required
}

func ExampleFieldErrors() {
	_, err := protocol.Parse([]byte(`
id: isp-example
version: 1
title: Example
signatories: [exley-csc, exley-police]
effective_from: 2026-04-01
review_by: 2027-03-31
expires: 2027-04-01
purposes: [safeguarding]
rules:
  - id: police-to-social-care
    providers: {types: [police]}
    requesters: {partners: [exley-csc]}
    purposes: [safeguarding, marketing]
    categories: [police_concerns]
    lawful_basis: "DPA 2018 Part 3 s35"
    consent: sometimes
`))
	fmt.Println(errors.Is(err, protocol.ErrInvalid))
	for _, fe := range protocol.FieldErrors(err) {
		fmt.Println(fe)
	}
	// Output:
	// true
	// rules[0].purposes[1]: "marketing" is not one of the protocol's purposes
	// rules[0].consent: "sometimes" is not one of required, not_required, overridable
}

func ExampleFormatStatus() {
	statuses := []protocol.Status{{
		File:   "protocols/education-welfare.yaml",
		Digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Protocol: &protocol.Protocol{
			ID: "isp-education-welfare", Version: "1",
			Signatories:   []string{"exley-education", "exley-district"},
			EffectiveFrom: protocol.NewDate(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)),
			Expires:       protocol.NewDate(time.Date(2028, 9, 1, 0, 0, 0, 0, time.UTC)),
		},
		Reasons:  []string{"no signature from exley-district"},
		Warnings: []string{"review overdue since 2026-08-31 (review_by)"},
		Signatures: []protocol.SignatureResult{
			{Partner: "exley-education", KeyID: "exley-education-3q2-7wAbCdEf", OK: true},
		},
	}}
	_ = protocol.FormatStatus(os.Stdout, statuses)
	// Output:
	// PROTOCOL               VERSION  STATUS        EFFECTIVE   EXPIRES     SIGNED  DIGEST        FILE
	// isp-education-welfare  1        NOT IN FORCE  2026-09-01  2028-09-01  1/2     9f86d081884c  protocols/education-welfare.yaml
	//
	// isp-education-welfare (protocols/education-welfare.yaml)
	//   not in force: no signature from exley-district
	//   warning: review overdue since 2026-08-31 (review_by)
	//   signature exley-education (kid exley-education-3q2-7wAbCdEf): ok
}
