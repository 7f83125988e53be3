package oidc

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/request"
)

// defaultLocationsJWT compiles one rule with Istio's default locations
// (Authorization: Bearer, access_token) and returns its authenticator, a
// valid token for alice and one for mallory signed by another key.
func defaultLocationsJWT(t *testing.T) (au *Authenticator, valid, forged string) {
	t.Helper()
	k := getTestKeys()
	valid = rsaToken(t, goodClaims())
	forged = signToken(t, map[string]any{"alg": "RS256", "kid": "rsa1"}, with(goodClaims(), "sub", "mallory"), k.attacker)
	au = mustCompile(t, fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules: [{issuer: %s, jwks: '%s'}]
`, testIssuer, defaultJWKS()), Options{}).ForListener(nil)
	return au, valid, forged
}

// TestAmbiguousQuery: a query the JWT rules can't read one way only (an
// unescaped ';', which backends split on or not: parameter cloaking) is
// refused as a malformed request, 400 "invalid query" with no challenge,
// whether it hides a token, a valid one or none; it is never read as "no
// token". A header credential that can't be read is still reported as such.
// Rules that read no query parameter don't parse the query and let it pass.
func TestAmbiguousQuery(t *testing.T) {
	defaults, valid, forged := defaultLocationsJWT(t)
	headerOnly := mustCompile(t, fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules: [{issuer: %s, jwks: '%s', fromHeaders: [{name: Authorization, prefix: "Bearer "}]}]
`, testIssuer, defaultJWKS()), Options{}).ForListener(nil)

	tests := []struct {
		name    string
		au      *Authenticator
		query   string
		headers []string // name, value pairs
		wantErr error    // nil: success
		// wantCause is the pathnorm reason wrapped with ErrAmbiguousQuery.
		wantCause  error
		wantStatus int
		wantSub    string // "" with wantErr nil: anonymous
	}{
		{name: "semicolon, no token", au: defaults, query: "a=1;b=2",
			wantErr: ErrAmbiguousQuery, wantCause: pathnorm.ErrQuerySemicolon, wantStatus: http.StatusBadRequest},
		{name: "valid token before a semicolon", au: defaults, query: "access_token=" + valid + ";x=1",
			wantErr: ErrAmbiguousQuery, wantCause: pathnorm.ErrQuerySemicolon, wantStatus: http.StatusBadRequest},
		{name: "forged token before a semicolon", au: defaults, query: "access_token=" + forged + ";x=1",
			wantErr: ErrAmbiguousQuery, wantCause: pathnorm.ErrQuerySemicolon, wantStatus: http.StatusBadRequest},
		{name: "forged token after a semicolon", au: defaults, query: "x=1;access_token=" + forged,
			wantErr: ErrAmbiguousQuery, wantCause: pathnorm.ErrQuerySemicolon, wantStatus: http.StatusBadRequest},
		// The readable copy verifies; the cloaked one would reach a backend
		// that splits on ';' unverified.
		{name: "valid token, forged one cloaked", au: defaults, query: "access_token=" + valid + "&x=1;access_token=" + forged,
			wantErr: ErrAmbiguousQuery, wantCause: pathnorm.ErrQuerySemicolon, wantStatus: http.StatusBadRequest},
		// A verified header token does not make the query readable.
		{name: "valid header token, forged one cloaked", au: defaults, query: "x=1;access_token=" + forged,
			headers: []string{"Authorization", "Bearer " + valid},
			wantErr: ErrAmbiguousQuery, wantCause: pathnorm.ErrQuerySemicolon, wantStatus: http.StatusBadRequest},
		{name: "bad escape", au: defaults, query: "x=%zz",
			wantErr: ErrAmbiguousQuery, wantCause: pathnorm.ErrInvalidEscape, wantStatus: http.StatusBadRequest},
		// A credential the client did send wrong is named as such.
		{name: "unreadable header beside a semicolon", au: defaults, query: "a=1;b=2",
			headers: []string{"Authorization", "Basic dXNlcjpwYXNz"},
			wantErr: errUnreadableCredential, wantStatus: http.StatusUnauthorized},
		{name: "valid query token alone", au: defaults, query: "access_token=" + valid, wantSub: "alice"},
		{name: "valid query token, escaped semicolon", au: defaults, query: "access_token=" + valid + "&x=1%3B2", wantSub: "alice"},
		{name: "forged query token alone", au: defaults, query: "access_token=" + forged,
			wantErr: errSignature, wantStatus: http.StatusUnauthorized},
		{name: "clean query, no token", au: defaults, query: "a=1&b=2"},
		// Rules that read no parameter never parse the query: as before.
		{name: "header-only rules, semicolon", au: headerOnly, query: "a=1;b=2"},
		{name: "header-only rules, semicolon, valid header token", au: headerOnly, query: "a=1;b=2",
			headers: []string{"Authorization", "Bearer " + valid}, wantSub: "alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/hello?"+tc.query, nil)
			for i := 0; i+1 < len(tc.headers); i += 2 {
				r.Header.Add(tc.headers[i], tc.headers[i+1])
			}
			res, err := authRequest(tc.au, r)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				got := ""
				if res.Auth != nil {
					got = res.Auth.Subject
				}
				if got != tc.wantSub {
					t.Fatalf("subject = %q, want %q", got, tc.wantSub)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantCause != nil && !errors.Is(err, tc.wantCause) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.wantCause)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != tc.wantStatus {
				t.Fatalf("err = %#v, want *Error with status %d", err, tc.wantStatus)
			}
			if res.Auth != nil {
				t.Fatalf("refused request has identity %+v", res.Auth)
			}
			wantReason, wantChallenge := "invalid query", false
			if tc.wantErr != ErrAmbiguousQuery {
				wantReason, wantChallenge = newError(tc.wantErr).Reason, true
			}
			if ae.Reason != wantReason {
				t.Errorf("reason = %q, want %q", ae.Reason, wantReason)
			}
			if c := ae.Challenge(); (c != "") != wantChallenge {
				t.Errorf("challenge = %q, want one: %v", c, wantChallenge)
			}
			if strings.Contains(err.Error(), valid) || strings.Contains(err.Error(), forged) {
				t.Errorf("error names the token: %v", err)
			}
		})
	}
}

// TestQueryReadFromRequestDescription: query tokens are read from the
// request description the policy judges (its RawQuery, the query the
// upstream receives, or its Query once the exchange decoded it), never from
// the URL the client sent; and a decoded Query gives exactly what reading
// RawQuery gives, so that decoding before authentication (to share the map
// with the policy) can't change a decision.
func TestQueryReadFromRequestDescription(t *testing.T) {
	au, valid, forged := defaultLocationsJWT(t)
	if !au.ReadsQuery() {
		t.Fatal("default locations read no query parameter")
	}

	// The URL as sent carries a forged token the front dropped (a
	// method-override pair, say): the description's query decides.
	r := httptest.NewRequest("GET", "/hello?access_token="+forged, nil)
	res, err := au.Authenticate(r, &request.Request{RawQuery: "access_token=" + valid})
	if err != nil || res.Auth == nil || res.Auth.Subject != "alice" {
		t.Fatalf("token of the description's query: auth %+v, err %v; want alice", res.Auth, err)
	}
	res, err = au.Authenticate(r, &request.Request{})
	if err != nil || res.Auth != nil {
		t.Fatalf("no query in the description: auth %+v, err %v; want anonymous", res.Auth, err)
	}

	for _, raw := range []string{
		"", "x=1", "access_token=" + valid, "access_token=" + forged, "x=1&access_token=" + valid + "&y=2",
		"access%5Ftoken=" + valid, "access_token=" + valid + "&access_token=" + valid, "access_token=",
		"access_token=" + valid + ";x=1", "x=%zz&access_token=" + valid, "a+b=1&access_token=" + valid,
	} {
		r := httptest.NewRequest("GET", "/hello", nil)
		raw1, err1 := au.Authenticate(r, &request.Request{RawQuery: raw})
		q, _ := pathnorm.ParseQuery(raw) // nil on error, as the exchange leaves it
		dec, err2 := au.Authenticate(r, &request.Request{RawQuery: raw, Query: q})
		if fmt.Sprint(err1) != fmt.Sprint(err2) || (raw1.Auth == nil) != (dec.Auth == nil) ||
			(raw1.Auth != nil && raw1.Auth.Subject != dec.Auth.Subject) {
			t.Errorf("query %q: read raw: %+v, %v; read decoded: %+v, %v", raw, raw1.Auth, err1, dec.Auth, err2)
		}
	}
}
