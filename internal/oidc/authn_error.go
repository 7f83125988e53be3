package oidc

import (
	"errors"
	"net/http"
)

// Error is a failed JWT authentication. Status is what the client gets (401;
// 403 for an audience the rule does not accept; 400 for a query that can't be
// read one way only, ErrAmbiguousQuery); Reason is a short message safe to show
// the client. Error() and the wrapped cause are for the log only: they
// may name issuers, kids and URLs, never the token.
type Error struct {
	Status int
	Reason string
	err    error
}

func (e *Error) Error() string { return "jwt authentication failed: " + e.err.Error() }

func (e *Error) Unwrap() error { return e.err }

// Challenge returns the WWW-Authenticate value for a 401 (RFC 6750 §3), or ""
// for a 403 or a 400: a malformed request is no token problem, and a challenge
// would invite the client to retry the same request with another token.
func (e *Error) Challenge() string {
	if e.Status != http.StatusUnauthorized {
		return ""
	}
	return `Bearer error="invalid_token", error_description="` + e.Reason + `"`
}

// safeReasons maps a cause to what the client may be told. Anything else,
// including JWKS outages and signature failures, is just "invalid token": the
// client learns nothing about keys or infrastructure.
var safeReasons = []struct {
	err    error
	reason string
}{
	{errExpired, "token expired"},
	{errNotYetValid, "token not yet valid"},
	{errAudience, "audience not allowed"},
	{errTokenTooLarge, "token too large"},
	{errMultipleTokens, "ambiguous token"},
	{errUnreadableCredential, "unreadable credential"},
	{errUnknownIssuer, "issuer not configured"},
	{ErrAmbiguousQuery, "invalid query"},
}

// newError wraps a verification failure; only an audience mismatch is a 403,
// as in Envoy's jwt_authn. A query that can't be read one way only is a 400
// with the reason the policy gives it (exchange.Authorize): the request is
// malformed whether or not it carries a token.
func newError(err error) *Error {
	e := &Error{Status: http.StatusUnauthorized, Reason: "invalid token", err: err}
	for _, r := range safeReasons {
		if errors.Is(err, r.err) {
			e.Reason = r.reason
			break
		}
	}
	switch {
	case errors.Is(err, errAudience):
		e.Status = http.StatusForbidden
	case errors.Is(err, ErrAmbiguousQuery):
		e.Status = http.StatusBadRequest
	}
	return e
}
