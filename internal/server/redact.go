package server

import (
	"reflect"

	"github.com/childrens-trust/trustgate/internal/audit"
	"github.com/childrens-trust/trustgate/internal/nhs"
)

// unredacted are the entry's fields the gateway itself fills with
// hashes and pseudonyms (hex, which may hold ten digits in a row by
// chance): never caller text.
var unredacted = map[string]bool{
	"Subject": true, "PolicyRevision": true, "DisclosedSHA256": true, "PrevHash": true, "Hash": true,
}

// redactEntry passes every text bound for the audit entry (path, error,
// reasons, field names, claimed identities, values of the wrong field:
// every string and string list of the entry, whatever fields it has)
// through nhs.Redact, so that no NHS number is ever stored in clear,
// whatever the input. It is the one place an entry's text is redacted,
// just before the append.
func redactEntry(e *audit.Entry) {
	v := reflect.ValueOf(e).Elem()
	t := v.Type()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if unredacted[t.Field(i).Name] || !f.CanSet() {
			continue
		}
		switch {
		case f.Kind() == reflect.String:
			f.SetString(nhs.Redact(f.String()))
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			for j := 0; j < f.Len(); j++ {
				f.Index(j).SetString(nhs.Redact(f.Index(j).String()))
			}
		}
	}
}
