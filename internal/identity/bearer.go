package identity

import (
	"net/http"
	"strings"
)

// ExtractBearer returns the bearer token of r's Authorization header
// (RFC 6750 §2.1: the scheme "Bearer", case-insensitive, one or more
// spaces, a b64token). No header, an empty one, or a "Bearer" with no token
// is token_missing; more than one Authorization header, another scheme, or
// a token with characters outside b64token is malformed. The token's length
// is Verify's to judge.
func ExtractBearer(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) > 1:
		return "", &AuthError{Code: CodeMalformed, Message: "more than one Authorization header"}
	case len(vals) == 0 || strings.TrimSpace(vals[0]) == "":
		return "", &AuthError{Code: CodeTokenMissing, Message: "no Authorization header"}
	}
	scheme, rest, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &AuthError{Code: CodeMalformed, Message: "Authorization scheme must be Bearer"}
	}
	tok := strings.TrimLeft(rest, " ")
	if tok == "" {
		return "", &AuthError{Code: CodeTokenMissing, Message: "Authorization header carries no bearer token"}
	}
	if !isB64Token(tok) {
		return "", &AuthError{Code: CodeMalformed, Message: "bearer token has characters outside the b64token syntax"}
	}
	return tok, nil
}

// isB64Token reports whether s matches RFC 6750's
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}
