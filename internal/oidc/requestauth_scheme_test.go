package oidc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const otherIssuer = "https://token.test"

// schemeAuthn reads Authorization with two schemes (two rules, two issuers),
// X-Jwt after a prefix that is no auth-scheme, X-Raw without a prefix, and
// the access_token parameter.
func schemeAuthn(t testing.TB) *Authenticator {
	t.Helper()
	src := fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: schemes}
spec:
  jwtRules:
  - issuer: %s
    jwks: '%s'
    fromHeaders: [{name: Authorization, prefix: "Bearer "}, {name: x-jwt, prefix: "jwt="}, {name: x-raw}]
    fromParams: [access_token]
  - issuer: %s
    jwks: '%s'
    fromHeaders: [{name: authorization, prefix: "Token "}]
`, testIssuer, defaultJWKS(), otherIssuer, defaultJWKS())
	return mustCompile(t, src, Options{}).ForListener(nil)
}

// TestHeaderCredentialForms: a header a rule reads tokens from either yields
// a token that is verified or refuses the request; it is never skipped as "no
// token" and forwarded unverified (lower-case "bearer <forged>" used to reach
// the upstream, even beside a verified query token).
func TestHeaderCredentialForms(t *testing.T) {
	au := schemeAuthn(t)
	k := getTestKeys()
	tok := rsaToken(t, goodClaims())
	forged := signToken(t, map[string]any{"alg": "RS256", "kid": "rsa1"}, with(goodClaims(), "sub", "mallory"), k.attacker)
	mallory := rsaToken(t, with(goodClaims(), "sub", "mallory"))
	other := rsaToken(t, with(goodClaims(), "iss", otherIssuer))

	tests := []struct {
		name    string
		headers []string // name, value pairs, added in order
		wantErr error    // nil: success
		wantSub string   // "" with wantErr nil: anonymous
		// queryErr is the error beside a valid query token for alice, when it
		// differs from wantErr (a token of another principal).
		queryErr error
	}{
		{name: "Bearer", headers: []string{"Authorization", "Bearer " + tok}, wantSub: "alice"},
		{name: "lower-case scheme", headers: []string{"Authorization", "bearer " + tok}, wantSub: "alice"},
		{name: "upper-case scheme", headers: []string{"Authorization", "BEARER " + tok}, wantSub: "alice"},
		{name: "mixed-case scheme", headers: []string{"Authorization", "bEaReR " + tok}, wantSub: "alice"},
		{name: "tab", headers: []string{"Authorization", "Bearer\t" + tok}, wantSub: "alice"},
		{name: "several spaces", headers: []string{"Authorization", "Bearer    " + tok}, wantSub: "alice"},
		{name: "spaces and tabs", headers: []string{"Authorization", "Bearer \t \t" + tok}, wantSub: "alice"},
		{name: "trailing whitespace", headers: []string{"Authorization", "Bearer " + tok + " \t"}, wantSub: "alice"},
		{name: "forged token, lower-case scheme", headers: []string{"Authorization", "bearer " + forged}, wantErr: errSignature},
		{name: "garbage token, upper-case scheme", headers: []string{"Authorization", "BEARER x"}, wantErr: errMalformed},
		{name: "two tokens in one value", headers: []string{"Authorization", "Bearer " + tok + " " + tok}, wantErr: errMalformed},
		{name: "Basic", headers: []string{"Authorization", "Basic dXNlcjpwYXNz"}, wantErr: errUnreadableCredential},
		{name: "scheme only", headers: []string{"Authorization", "Bearer"}, wantErr: errUnreadableCredential},
		{name: "scheme and spaces", headers: []string{"Authorization", "bearer   "}, wantErr: errUnreadableCredential},
		{name: "scheme and tab", headers: []string{"Authorization", "Bearer\t"}, wantErr: errUnreadableCredential},
		{name: "no separator", headers: []string{"Authorization", "Bearer" + tok}, wantErr: errUnreadableCredential},
		{name: "comma separator", headers: []string{"Authorization", "Bearer," + tok}, wantErr: errUnreadableCredential},
		{name: "longer scheme", headers: []string{"Authorization", "Bearerx " + tok}, wantErr: errUnreadableCredential},
		{name: "no-break space separator", headers: []string{"Authorization", "Bearer\u00a0" + tok}, wantErr: errUnreadableCredential},
		// strings.EqualFold("to\u212Aen", "Token") is true: Unicode folding
		// would let a scheme that is no token through.
		{name: "Kelvin sign in the scheme", headers: []string{"Authorization", "To\u212Aen " + other}, wantErr: errUnreadableCredential},
		{name: "garbage", headers: []string{"Authorization", "garbage"}, wantErr: errUnreadableCredential},
		{name: "token without scheme", headers: []string{"Authorization", tok}, wantErr: errUnreadableCredential},
		{name: "whitespace only", headers: []string{"Authorization", " "}, wantErr: errUnreadableCredential},
		{name: "empty value is no credential", headers: []string{"Authorization", ""}},
		{name: "no header", headers: nil},
		{name: "valid token of another principal", headers: []string{"Authorization", "Bearer " + mallory}, wantSub: "mallory", queryErr: errMultipleTokens},
		{name: "Bearer and Basic", headers: []string{"Authorization", "bearer " + tok, "Authorization", "Basic dXNlcjpwYXNz"}, wantErr: errMultipleTokens},
		// A second rule reads Authorization with its own scheme: a value that
		// one of them reads is not "unreadable" for the other.
		{name: "second rule's scheme", headers: []string{"Authorization", "Token " + other}, wantSub: "alice", queryErr: errMultipleTokens},
		{name: "second rule's scheme, other case and tab", headers: []string{"Authorization", "tOKEN\t" + other}, wantSub: "alice", queryErr: errMultipleTokens},
		{name: "token under the other rule's scheme", headers: []string{"Authorization", "Token " + tok}, wantErr: errUnknownIssuer},
		// A prefix that is no auth-scheme is matched exactly.
		{name: "exact prefix", headers: []string{"X-Jwt", "jwt=" + tok}, wantSub: "alice"},
		{name: "exact prefix, space after", headers: []string{"X-Jwt", "jwt= " + tok}, wantSub: "alice"},
		{name: "exact prefix in another case", headers: []string{"X-Jwt", "JWT=" + tok}, wantErr: errUnreadableCredential},
		{name: "scheme where an exact prefix is configured", headers: []string{"X-Jwt", "Bearer " + tok}, wantErr: errUnreadableCredential},
		{name: "exact prefix, nothing after", headers: []string{"X-Jwt", "jwt="}, wantErr: errUnreadableCredential},
		{name: "no prefix", headers: []string{"X-Raw", tok}, wantSub: "alice"},
		{name: "no prefix, scheme sent", headers: []string{"X-Raw", "Bearer " + tok}, wantErr: errMalformed},
		{name: "no prefix, whitespace only", headers: []string{"X-Raw", "\t"}, wantErr: errUnreadableCredential},
		{name: "header and exact prefix both good", headers: []string{"Authorization", "bearer " + tok, "X-Jwt", "jwt=" + tok}, wantSub: "alice"},
		{name: "good header, unreadable other header", headers: []string{"Authorization", "bearer " + tok, "X-Jwt", "Basic x"}, wantErr: errUnreadableCredential},
	}
	for _, tc := range tests {
		for _, withQuery := range []bool{false, true} {
			name := tc.name
			if withQuery {
				name += "/beside a valid query token"
			}
			t.Run(name, func(t *testing.T) {
				target := "/"
				if withQuery {
					target = "/?access_token=" + tok
				}
				r := httptest.NewRequest("GET", target, nil)
				for i := 0; i+1 < len(tc.headers); i += 2 {
					r.Header.Add(tc.headers[i], tc.headers[i+1])
				}
				wantErr, wantSub := tc.wantErr, tc.wantSub
				if withQuery && wantErr == nil {
					wantErr, wantSub = tc.queryErr, "alice"
				}
				res, err := authRequest(au, r)
				if wantErr != nil {
					var ae *Error
					if !errors.Is(err, wantErr) || !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
						t.Fatalf("err = %v, want a 401 *Error wrapping %v", err, wantErr)
					}
					if res.Auth != nil {
						t.Fatalf("refused request has identity %+v", res.Auth)
					}
					if wantErr == errUnreadableCredential && ae.Reason != "unreadable credential" {
						t.Errorf("reason %q, want %q", ae.Reason, "unreadable credential")
					}
					if strings.Contains(err.Error(), "dXNlcjpwYXNz") || strings.Contains(err.Error(), tok) {
						t.Errorf("error names the credential: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				got := ""
				if res.Auth != nil {
					got = res.Auth.Subject
				}
				if got != wantSub {
					t.Fatalf("subject %q, want %q", got, wantSub)
				}
				// A header that carried a verified token never reaches the upstream.
				h := r.Header.Clone()
				res.Apply(h)
				for i := 0; i+1 < len(tc.headers); i += 2 {
					if tc.headers[i+1] != "" && h.Get(tc.headers[i]) != "" {
						t.Errorf("upstream gets %s %q", tc.headers[i], h.Get(tc.headers[i]))
					}
				}
			})
		}
	}
}

// TestHeaderCredentialFormsOverTheWire sends the forms through a real server
// over HTTP/1.1 and HTTP/2: what the listener's parser leaves of the field
// (it trims leading and trailing whitespace) is what extract judges.
func TestHeaderCredentialFormsOverTheWire(t *testing.T) {
	au := schemeAuthn(t)
	tok := rsaToken(t, goodClaims())
	forged := signToken(t, map[string]any{"alg": "RS256", "kid": "rsa1"}, with(goodClaims(), "sub", "mallory"), getTestKeys().attacker)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := authRequest(au, r)
		var ae *Error
		switch {
		case errors.As(err, &ae):
			w.WriteHeader(ae.Status)
			io.WriteString(w, ae.Reason)
		case err != nil:
			w.WriteHeader(http.StatusInternalServerError)
		case res.Auth == nil:
			io.WriteString(w, "anonymous")
		default:
			io.WriteString(w, res.Auth.Subject)
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	tests := []struct {
		name, value string
		wantStatus  int
		wantBody    string
	}{
		{name: "lower-case scheme", value: "bearer " + tok, wantStatus: 200, wantBody: "alice"},
		{name: "tab", value: "Bearer\t" + tok, wantStatus: 200, wantBody: "alice"},
		{name: "several spaces", value: "BEARER   " + tok, wantStatus: 200, wantBody: "alice"},
		{name: "forged, lower-case scheme", value: "bearer " + forged, wantStatus: 401, wantBody: "invalid token"},
		{name: "Basic", value: "Basic dXNlcjpwYXNz", wantStatus: 401, wantBody: "unreadable credential"},
		{name: "scheme only", value: "Bearer", wantStatus: 401, wantBody: "unreadable credential"},
	}
	for _, proto := range []struct {
		name string
		h2   bool
	}{{"HTTP/1.1", false}, {"HTTP/2", true}} {
		roots := x509.NewCertPool()
		roots.AddCert(srv.Certificate())
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Protocols: new(http.Protocols)}
		tr.Protocols.SetHTTP1(!proto.h2)
		tr.Protocols.SetHTTP2(proto.h2)
		t.Cleanup(tr.CloseIdleConnections)
		c := &http.Client{Transport: tr}
		for _, tc := range tests {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				req, err := http.NewRequest("GET", srv.URL+"/?access_token="+tok, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", tc.value)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.ProtoMajor != map[bool]int{false: 1, true: 2}[proto.h2] {
					t.Fatalf("spoke %s, want %s", resp.Proto, proto.name)
				}
				if resp.StatusCode != tc.wantStatus || string(body) != tc.wantBody {
					t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
				}
			})
		}
	}
}

// bearerForm is RFC 9110's reading of an Authorization value for the Bearer
// scheme, written independently of location.credential: the scheme in any
// ASCII case, 1*(SP / HTAB), the credential, optional trailing whitespace.
// (?i) folds Unicode, but no letter of "bearer" has a non-ASCII fold.
var bearerForm = regexp.MustCompile(`(?s)^(?i:bearer)[ \t]+(.*?)[ \t]*$`)

// FuzzAuthorizationHeader: on a listener whose rules read Authorization, the
// header either yields a token that is verified (and then removed before
// forwarding) or refuses the request; never "no token" while the header is
// present and not empty. With a valid query token beside it, the header can
// only make things stricter.
func FuzzAuthorizationHeader(f *testing.F) {
	src := fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: fuzz}
spec:
  jwtRules: [{issuer: %s, jwks: '%s'}]
`, testIssuer, defaultJWKS())
	au := mustCompile(f, src, Options{}).ForListener(nil)
	tok := rsaToken(f, goodClaims())
	for _, v := range []string{
		"Bearer " + tok, "bearer " + tok, "BEARER\t" + tok, "Bearer  \t " + tok + " ", "Bearer", "Bearer ",
		"Basic dXNlcjpwYXNz", "Bearer" + tok, tok, "", " ", "garbage", "Bearer x", "Bearer " + tok + " x",
		"Be\u0430rer " + tok, "Bearer\u00a0" + tok, "Bearer\r\n" + tok,
	} {
		f.Add(v, false)
		f.Add(v, true)
	}
	safe := []string{"invalid token", "token expired", "token not yet valid", "audience not allowed",
		"token too large", "ambiguous token", "issuer not configured", "unreadable credential"}
	f.Fuzz(func(t *testing.T, value string, query bool) {
		target := "/"
		if query {
			target = "/?access_token=" + tok
		}
		r := httptest.NewRequest("GET", target, nil)
		r.Header["Authorization"] = []string{value}
		res, err := authRequest(au, r)
		if err == nil && res.Auth == nil && value != "" {
			t.Fatalf("Authorization %q is treated as no token", value)
		}
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !slices.Contains(safe, ae.Reason) {
				t.Fatalf("Authorization %q: err %v, want a 401 *Error with a safe reason", value, err)
			}
			if res.Auth != nil {
				t.Fatalf("Authorization %q refused with an identity", value)
			}
		}
		m := bearerForm.FindStringSubmatch(value)
		switch {
		case value == "":
			if err != nil || (res.Auth != nil) != query {
				t.Fatalf("no Authorization, query %v: auth %+v err %v", query, res.Auth, err)
			}
		case m == nil || m[1] == "":
			if !errors.Is(err, errUnreadableCredential) {
				t.Fatalf("Authorization %q is not the Bearer form: err %v, want %v", value, err, errUnreadableCredential)
			}
		case m[1] == tok:
			if err != nil || res.Auth == nil || res.Auth.Subject != "alice" {
				t.Fatalf("Authorization %q carries the valid token: auth %+v err %v", value, res.Auth, err)
			}
			if !slices.Contains(res.Remove, "Authorization") {
				t.Fatalf("verified Authorization %q is forwarded: remove %v", value, res.Remove)
			}
		default:
			if err == nil {
				t.Fatalf("Authorization %q carries %q, not a valid token, and passed as %+v", value, m[1], res.Auth)
			}
		}
	})
}
