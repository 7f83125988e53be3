package oidc

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/request"
)

func TestOutputHeadersAndTokenRemoval(t *testing.T) {
	src := fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: out}
spec:
  jwtRules:
  - issuer: %s
    jwks: '%s'
    fromHeaders: [{name: x-jwt, prefix: "Token "}]
    fromParams: [tok]
    fromCookies: [session_jwt]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {header: x-sub, claim: sub}
    - {header: x-level, claim: org.level}
    - {header: x-admin, claim: admin}
    - {header: x-groups, claim: groups}
    - {header: x-evil, claim: evil}
  - issuer: https://fwd.test
    jwks: '%s'
    forwardOriginalToken: true
`, testIssuer, defaultJWKS(), defaultJWKS())
	a := mustCompile(t, src, Options{})
	au := a.ForListener(nil)
	claims := with(goodClaims(), "org", map[string]any{"level": 3}, "admin", true, "groups", []string{"a"}, "evil", "a\r\nx-injected: 1")
	tok := rsaToken(t, claims)
	payload := strings.Split(tok, ".")[1]
	fwdTok := rsaToken(t, with(goodClaims(), "iss", "https://fwd.test"))
	spoofed := func(r *http.Request) *http.Request {
		for _, h := range []string{"X-Jwt-Payload", "X-Sub", "X-Level", "X-Admin", "X-Groups", "X-Evil"} {
			r.Header.Set(h, "spoofed")
		}
		return r
	}

	tests := []struct {
		name string
		req  *http.Request
		want http.Header // upstream headers after Result.Apply
	}{
		{
			name: "header token removed, outputs set, spoofs stripped",
			req: spoofed(func() *http.Request {
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("X-Jwt", "Token "+tok)
				return r
			}()),
			want: http.Header{"X-Jwt-Payload": {payload}, "X-Sub": {"alice"}, "X-Level": {"3"}, "X-Admin": {"true"}},
		},
		{
			name: "no token: spoofs stripped anyway",
			req:  spoofed(httptest.NewRequest("GET", "/", nil)),
			want: http.Header{},
		},
		{
			name: "scheme in another letter case",
			req: spoofed(func() *http.Request {
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("X-Jwt", "TOKEN\t "+tok)
				return r
			}()),
			want: http.Header{"X-Jwt-Payload": {payload}, "X-Sub": {"alice"}, "X-Level": {"3"}, "X-Admin": {"true"}},
		},
		{
			name: "query token is not stripped",
			req:  httptest.NewRequest("GET", "/?tok="+tok, nil),
			want: http.Header{"X-Jwt-Payload": {payload}, "X-Sub": {"alice"}, "X-Level": {"3"}, "X-Admin": {"true"}},
		},
		{
			name: "cookie token",
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/", nil)
				r.AddCookie(&http.Cookie{Name: "session_jwt", Value: tok})
				return r
			}(),
			want: http.Header{"Cookie": {"session_jwt=" + tok}, "X-Jwt-Payload": {payload}, "X-Sub": {"alice"}, "X-Level": {"3"}, "X-Admin": {"true"}},
		},
		{
			name: "forwardOriginalToken keeps Authorization",
			req:  bearer(httptest.NewRequest("GET", "/", nil), fwdTok),
			want: http.Header{"Authorization": {"Bearer " + fwdTok}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := authRequest(au, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			h := tc.req.Header.Clone()
			res.Apply(h)
			if diff := cmp.Diff(tc.want, h); diff != "" {
				t.Errorf("upstream headers (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := base64.RawURLEncoding.DecodeString(payload); err != nil {
		t.Fatal(err)
	}
	// A request without a token still has every output header of every rule stripped.
	anon := httptest.NewRequest("GET", "/", nil)
	anon.Header = http.Header{"X-Sub": {"x"}, "X-Jwt-Payload": {"x"}, "X-Other": {"kept"}}
	res, err := authRequest(au, anon)
	if err != nil || res.Auth != nil {
		t.Fatalf("anonymous request: %+v %v", res, err)
	}
	res.Apply(anon.Header)
	if diff := cmp.Diff(http.Header{"X-Other": {"kept"}}, anon.Header); diff != "" {
		t.Errorf("output headers of an anonymous request (-want +got):\n%s", diff)
	}
	// A failed token still yields the headers to strip.
	r := spoofed(bearer(httptest.NewRequest("GET", "/", nil), "x.y.z"))
	r.Header.Del("Authorization")
	r.Header.Set("X-Jwt", "Token x.y.z")
	res, err = authRequest(au, r)
	if err == nil {
		t.Fatal("bad token accepted")
	}
	res.Apply(r.Header)
	if got := r.Header.Get("X-Sub"); got != "" {
		t.Errorf("spoofed X-Sub survived a failed authentication: %q", got)
	}
}

func TestForListenerSelectors(t *testing.T) {
	jwks := defaultJWKS()
	src := fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: all, namespace: istio-system}
spec:
  jwtRules: [{issuer: "https://all.test", jwks: '%[1]s'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: public, namespace: apps}
spec:
  selector: {matchLabels: {app: public, tier: edge}}
  jwtRules: [{issuer: "https://public.test", jwks: '%[1]s'}]
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: empty-selector}
spec:
  selector: {}
  jwtRules: [{issuer: "https://empty.test", jwks: '%[1]s'}]
`, jwks)
	a := mustCompile(t, src, Options{})
	edge := map[string]string{"app": "public", "tier": "edge", "x": "y"}
	tests := []struct {
		name      string
		namespace string
		labels    map[string]string
		issuers   []string
	}{
		{name: "no labels", labels: nil, issuers: []string{"https://all.test", "https://empty.test"}},
		{name: "partial match", labels: map[string]string{"app": "public"}, issuers: []string{"https://all.test", "https://empty.test"}},
		{name: "full match", labels: edge, issuers: []string{"https://all.test", "https://empty.test", "https://public.test"}},
		// With a namespace, only the root namespace's documents and the listener's own apply;
		// a document without metadata.namespace is in "default", as in Istio.
		{name: "namespace apps", namespace: "apps", labels: edge, issuers: []string{"https://all.test", "https://public.test"}},
		{name: "namespace default", namespace: "default", labels: edge, issuers: []string{"https://all.test", "https://empty.test"}},
		{name: "root namespace", namespace: "istio-system", labels: edge, issuers: []string{"https://all.test"}},
		{name: "other namespace", namespace: "payments", labels: nil, issuers: []string{"https://all.test"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			au := a.ForWorkload(config.Workload{Namespace: tc.namespace, Labels: tc.labels})
			var got []string
			for _, r := range au.rules {
				got = append(got, r.issuer)
			}
			if diff := cmp.Diff(tc.issuers, got); diff != "" {
				t.Errorf("issuers (-want +got):\n%s", diff)
			}
			if au.Len() != len(tc.issuers) {
				t.Errorf("Len = %d, want %d", au.Len(), len(tc.issuers))
			}
			for _, iss := range []string{"https://all.test", "https://public.test"} {
				err := authenticate(au, rsaToken(t, with(goodClaims(), "iss", iss)))
				if want := contains(tc.issuers, iss); (err == nil) != want {
					t.Errorf("token of %s: err = %v, want accepted=%v", iss, err, want)
				}
			}
		})
	}
}

func TestUnselectedJWTRules(t *testing.T) {
	src := fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: root, namespace: mesh-root}
spec:
  jwtRules: [{issuer: "https://root.test", jwks: '%[1]s'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: apps, namespace: apps}
spec:
  jwtRules: [{issuer: "https://apps.test", jwks: '%[1]s'}]
`, defaultJWKS())
	a := mustCompile(t, src, Options{RootNamespace: "mesh-root"})
	got := a.Unselected(config.Workload{Namespace: "edge"})
	want := []string{"ra.yaml:11: RequestAuthentication apps/apps spec.jwtRules[0]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Unselected (-want +got):\n%s", diff)
	}
	if got := a.Unselected(config.Workload{Namespace: "apps"}, config.Workload{Namespace: "edge"}); len(got) != 0 {
		t.Errorf("Unselected with an apps listener = %v, want none", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// authRequest authenticates r as the ingress does, with the request
// description a front builds: the query as sent, not decoded yet.
func authRequest(au *Authenticator, r *http.Request) (Result, error) {
	return au.Authenticate(r, &request.Request{RawQuery: r.URL.RawQuery})
}

// outputsJWT compiles one rule reading the default locations with an
// output claim header, and returns its authenticator and a token for alice.
func outputsJWT(t *testing.T) (*Authenticator, string) {
	t.Helper()
	au := mustCompile(t, fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: %s
    jwks: '%s'
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
`, testIssuer, defaultJWKS()), Options{}).ForListener(nil)
	return au, rsaToken(t, goodClaims())
}

// TestCachedOutputsStayTheToken: a cached token's output headers are shared
// by the requests that present it; what one request's later steps add to
// its headers never shows in another's.
func TestCachedOutputsStayTheToken(t *testing.T) {
	au, tok := outputsJWT(t)
	want := http.Header{"X-Sub": {"alice"}, "X-Jwt-Payload": {strings.Split(tok, ".")[1]}}
	for i := range 3 {
		r := bearer(httptest.NewRequest("GET", "/", nil), tok)
		res, err := authRequest(au, r)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		res.Apply(h)
		if diff := cmp.Diff(want, h); diff != "" {
			t.Fatalf("request %d: output headers (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(want, res.Header()); diff != "" {
			t.Fatalf("request %d: Result.Header (-want +got):\n%s", i, diff)
		}
		// What a later step of this request does to its own headers.
		h.Add("X-Sub", "mallory")
		h["X-Jwt-Payload"] = append(h["X-Jwt-Payload"], "forged")
		res.Header()["X-Sub"][0] = "mallory"
	}
}

// TestAuthenticateAllocs: verifying a token the cache holds, and setting
// its output headers, costs no allocation, with or without a query to
// read, decoded or not. (The first request, which verifies the signature,
// is not counted.)
func TestAuthenticateAllocs(t *testing.T) {
	au, tok := outputsJWT(t)
	query, err := pathnorm.ParseQuery("x=1&access_token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header bool
		q      request.Request
	}{
		{name: "header token, query without one", header: true, q: request.Request{RawQuery: "x=1&fields=a,b"}},
		{name: "query token", q: request.Request{RawQuery: "x=1&access_token=" + tok}},
		{name: "query token, decoded query", q: request.Request{RawQuery: "x=1&access_token=" + tok, Query: query}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			authz := []string{"Bearer " + tok}
			run := func() {
				if tc.header {
					r.Header["Authorization"] = authz
				}
				res, err := au.Authenticate(r, &tc.q)
				if err != nil || res.Auth == nil || res.Auth.Subject != "alice" {
					t.Fatalf("Authenticate: %+v, %v", res.Auth, err)
				}
				res.Apply(r.Header)
			}
			run()
			if n := testing.AllocsPerRun(100, run); n != 0 {
				t.Errorf("Authenticate and Apply allocate %v times per request, want 0", n)
			}
			if got := r.Header.Get("X-Sub"); got != "alice" {
				t.Errorf("X-Sub = %q, want alice", got)
			}
		})
	}
}
