package oidc

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCompileRequestAuthnErrors(t *testing.T) {
	jwks := defaultJWKS()
	head := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: x}\nspec:\n  jwtRules:\n"
	ext := "apiVersion: tollgate.dev/v1\nkind: RequestAuthentication\nmetadata: {name: x}\nspec:\n  jwtRules:\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{name: "valid istio", src: head + "  - {issuer: https://a.test, jwksUri: https://a.test/keys, fromHeaders: [{name: x-tok}], timeout: 2s}\n"},
		{name: "valid discovery", src: head + "  - issuer: https://a.test\n"},
		{name: "valid extension", src: ext + "  - {issuer: a, jwks: '" + jwks + "', algorithms: [ES256], clockSkew: 10s, maxTokenBytes: 4096}\n"},
		{name: "neither issuer nor jwksUri", src: head + "  - audiences: [a]\n",
			want: []string{"ra.yaml:6:5: spec.jwtRules[0]: one of issuer or jwksUri is required"}},
		{name: "discovery needs an URL issuer", src: head + "  - issuer: accounts.test\n",
			want: []string{`ra.yaml:6:13: spec.jwtRules[0].issuer: without jwksUri or jwks, keys come from OIDC discovery and the issuer must be an http(s) URL (got "accounts.test")`}},
		{name: "jwks and jwksUri", src: head + "  - {issuer: a, jwksUri: https://a.test/k, jwks: '" + jwks + "'}\n",
			want: []string{"ra.yaml:6:50: spec.jwtRules[0].jwks: jwks and jwksUri are mutually exclusive"}},
		{name: "jwksUri not http", src: head + "  - {issuer: a, jwksUri: 'file:///etc/keys'}\n",
			want: []string{`ra.yaml:6:26: spec.jwtRules[0].jwksUri: scheme must be http or https (got "file") (got "file:///etc/keys")`}},
		{name: "bad inline jwks", src: head + "  - {issuer: a, jwks: '{\"keys\":[]}'}\n",
			want: []string{"ra.yaml:6:23: spec.jwtRules[0].jwks: invalid JWKS: no usable signing keys"}},
		{name: "bad header names", src: head + "  - {issuer: a, jwks: '" + jwks + "', fromHeaders: [{name: 'x tok'}], outputPayloadToHeader: 'a:b', outputClaimToHeaders: [{header: x, claim: sub}, {header: X, claim: ''}]}\n",
			want: []string{
				`spec.jwtRules[0].fromHeaders[0].name: invalid header name (got "x tok", want ^[-_A-Za-z0-9]+$)`,
				`spec.jwtRules[0].outputPayloadToHeader: invalid header name (got "a:b", want ^[-_A-Za-z0-9]+$)`,
				`spec.jwtRules[0].outputClaimToHeaders[1].header: header "X" is set twice`,
				`spec.jwtRules[0].outputClaimToHeaders[1].claim: claim is required`,
			}},
		{name: "extension field in an istio document", src: head + "  - {issuer: https://a.test, algorithms: [HS256]}\n",
			want: []string{`ra.yaml:6:30: spec.jwtRules[0].algorithms: unknown field`}},
		{name: "unknown field suggests", src: head + "  - {issuer: https://a.test, jwksURI: https://a.test/k}\n",
			want: []string{`ra.yaml:6:30: spec.jwtRules[0].jwksURI: unknown field (did you mean "jwksUri"?)`}},
		{name: "bad extension values", src: ext + "  - {issuer: a, jwks: '" + jwks + "', algorithms: [none, HS256], clockSkew: 10m, maxTokenBytes: 10}\n",
			want: []string{
				`spec.jwtRules[0].algorithms[0]: unsupported algorithm (got "none", want one of ES256, ES384, ES512, EdDSA, HS256, HS384, HS512, PS256, PS384, PS512, RS256, RS384, RS512)`,
				`spec.jwtRules[0].clockSkew: clock skew at most 5m0s (got 10m0s)`,
				`spec.jwtRules[0].maxTokenBytes: must be between 64 and 1048576 (got 10)`,
			}},
		{name: "empty algorithms", src: ext + "  - {issuer: a, jwks: '" + jwks + "', algorithms: []}\n",
			want: []string{`spec.jwtRules[0].algorithms: empty list allows nothing; omit the field for the default`}},
		{name: "bad timeout", src: head + "  - {issuer: https://a.test, timeout: 0s}\n",
			want: []string{`spec.jwtRules[0].timeout: timeout must be positive and at most 1m0s (got 0s)`}},
		{name: "targetRef refused", src: "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: x}\nspec:\n  targetRef: {kind: Gateway, name: gw}\n  jwtRules: [{issuer: https://a.test}]\n",
			want: []string{`ra.yaml:5:14: spec.targetRef: targetRef/targetRefs are not supported by Tollgate (use spec.selector.matchLabels with listener labels)`}},
		{name: "bad namespace", src: "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: x, namespace: Edge}\nspec:\n  jwtRules: [{issuer: https://a.test}]\n",
			want: []string{`ra.yaml:3:32: metadata.namespace: want a namespace name: lower-case letters, digits and '-', at most 63 (got "Edge")`}},
		{name: "empty lists entries", src: head + "  - {issuer: https://a.test, audiences: [''], fromParams: [''], fromCookies: ['a=b']}\n",
			want: []string{
				`spec.jwtRules[0].audiences[0]: empty audience`,
				`spec.jwtRules[0].fromParams[0]: empty parameter name`,
				`spec.jwtRules[0].fromCookies[0]: invalid cookie name (got "a=b")`,
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Closed: compiling must not fetch from these made-up issuers.
			keys := NewKeyCache(KeyCacheOptions{})
			keys.Close()
			_, err := CompileRequestAuthn(parseDocs(t, tc.src), Options{Keys: keys})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("errors:\n%s\nwant %d:\n%s", err, len(tc.want), strings.Join(tc.want, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasSuffix(got[i], w) || !strings.HasPrefix(got[i], "ra.yaml:") {
					t.Errorf("error %d:\n got %s\nwant …%s", i, got[i], w)
				}
			}
		})
	}
}

func TestCompileIgnoresOtherDocuments(t *testing.T) {
	docs := parseDocs(t, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {bogus: 1}\n---\napiVersion: security.istio.io/v2\nkind: RequestAuthentication\nspec: {}\n")
	for _, d := range docs {
		if OwnsDocument(d) {
			t.Errorf("claims %s %s", d.APIVersion, d.Kind)
		}
	}
	a, err := CompileRequestAuthn(docs, Options{})
	if err != nil || len(a.rules) != 0 {
		t.Fatalf("rules=%d err=%v", len(a.rules), err)
	}
}

func TestCompileNeedsKeyCacheForRemoteKeys(t *testing.T) {
	_, err := CompileRequestAuthn(parseDocs(t, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: x}\nspec:\n  jwtRules: [{issuer: https://a.test}]\n"), Options{})
	if err == nil || !strings.Contains(err.Error(), "Options.Keys is nil") {
		t.Fatalf("err = %v", err)
	}
}

func TestExtensionSettingsApply(t *testing.T) {
	src := "apiVersion: tollgate.dev/v1\nkind: RequestAuthentication\nmetadata: {name: x}\nspec:\n  jwtRules:\n  - {issuer: '" + testIssuer + "', jwks: '" + defaultJWKS() + "', clockSkew: 0s, maxTokenBytes: 1024}\n"
	au := mustCompile(t, src, Options{}).ForListener(nil)
	tests := []struct {
		name    string
		tok     string
		wantErr error
	}{
		{name: "expired by one second, no skew", tok: rsaToken(t, with(goodClaims(), "exp", testNow.Add(-time.Second).Unix())), wantErr: errExpired},
		{name: "over maxTokenBytes", tok: rsaToken(t, with(goodClaims(), "pad", strings.Repeat("x", 1024))), wantErr: errTokenTooLarge},
		{name: "fits", tok: rsaToken(t, goodClaims())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := authenticate(au, tc.tok)
			if (err == nil) != (tc.wantErr == nil) || tc.wantErr != nil && !errorsIs(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
