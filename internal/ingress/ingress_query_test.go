package ingress

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/oidc"
)

// queryJWT compiles a RequestAuthentication with Istio's default locations
// (Authorization: Bearer and the access_token parameter) and returns its
// authenticator, a valid token for alice and one signed by another key.
func queryJWT(t testing.TB) (au *oidc.Authenticator, valid, forged string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
		b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))
	doc := fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: istio-system}\nspec:\n  jwtRules:\n  - issuer: https://issuer.test\n    audiences: [api]\n    jwks: '%s'\n    outputClaimToHeaders: [{header: x-user, claim: sub}]\n", jwks)
	nodes, err := config.ParseDocuments("authn.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	an, err := oidc.CompileRequestAuthn([]config.Document{{File: "authn.yaml", APIVersion: "security.istio.io/v1", Kind: "RequestAuthentication", Node: nodes[0]}}, oidc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(sub string, k *rsa.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": "https://issuer.test", "sub": sub, "aud": "api",
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return an.ForListener(nil), sign("alice", key), sign("mallory", attacker)
}

// TestAmbiguousQueryOnJWTRoute: on a route whose JWT rules read the
// access_token parameter, a query that can't be read one way only (a ';',
// which backends split on or not: parameter cloaking) is a malformed request,
// 400 "invalid query" as the policy answers it, with no Bearer challenge and
// audited as bad_request, whether it hides a token or not. It never reaches
// the upstream. A clean query with a valid token is served.
func TestAmbiguousQueryOnJWTRoute(t *testing.T) {
	au, valid, forged := queryJWT(t)
	tb := newTestbed(t, testbedOptions{authenticate: au})
	tests := []struct {
		name       string
		target     string
		wantStatus int
		wantError  string          // the JSON error, when refused
		wantKind   audit.ErrorKind // the audit error kind, when refused
		wantUser   string          // X-User the upstream sees, when served
	}{
		{name: "semicolon, no token", target: "/hello?a=1;b=2",
			wantStatus: http.StatusBadRequest, wantError: "invalid query", wantKind: audit.ErrBadRequest},
		{name: "forged token cloaked by a semicolon", target: "/hello?access_token=" + forged + ";x=1",
			wantStatus: http.StatusBadRequest, wantError: "invalid query", wantKind: audit.ErrBadRequest},
		{name: "valid token before a semicolon", target: "/hello?access_token=" + valid + ";x=1",
			wantStatus: http.StatusBadRequest, wantError: "invalid query", wantKind: audit.ErrBadRequest},
		{name: "valid token, forged one cloaked", target: "/hello?access_token=" + valid + "&x=1;access_token=" + forged,
			wantStatus: http.StatusBadRequest, wantError: "invalid query", wantKind: audit.ErrBadRequest},
		// Control: a token problem is still a 401 with a challenge.
		{name: "forged token, clean query", target: "/hello?access_token=" + forged + "&x=1",
			wantStatus: http.StatusUnauthorized, wantError: "invalid token", wantKind: audit.ErrUnauthenticated},
		{name: "valid token, clean query", target: "/hello?access_token=" + valid + "&x=1",
			wantStatus: http.StatusOK, wantUser: "alice"},
		{name: "clean query, no token", target: "/hello?a=1&b=2", wantStatus: http.StatusOK},
	}
	for _, proto := range []struct {
		name string
		h2   bool
	}{{"HTTP/1.1", false}, {"HTTP/2", true}} {
		c := tb.client(proto.h2)
		for _, tc := range tests {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				req, err := http.NewRequest("GET", tb.front.URL+tc.target, nil)
				if err != nil {
					t.Fatal(err)
				}
				hits, events := tb.hits.get(), tb.events.count()
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tc.wantStatus, body)
				}
				if resp.ProtoMajor != map[bool]int{false: 1, true: 2}[proto.h2] {
					t.Fatalf("served over %s, want %s", resp.Proto, proto.name)
				}
				if tc.wantStatus == http.StatusOK {
					if got := tb.hits.get() - hits; got != 1 {
						t.Fatalf("upstream hit %d times, want 1", got)
					}
					var e echo
					if err := json.Unmarshal(body, &e); err != nil {
						t.Fatalf("upstream echo: %v (%s)", err, body)
					}
					if got := http.Header(e.Header).Get("X-User"); got != tc.wantUser {
						t.Fatalf("upstream X-User = %q, want %q", got, tc.wantUser)
					}
					return
				}
				if got := tb.hits.get() - hits; got != 0 {
					t.Fatalf("refused request reached the upstream %d times", got)
				}
				if msg, _ := errorBody(t, body); msg != tc.wantError {
					t.Errorf("error = %q, want %q", msg, tc.wantError)
				}
				challenge := resp.Header.Get("WWW-Authenticate")
				if wantChallenge := tc.wantStatus == http.StatusUnauthorized; (challenge != "") != wantChallenge {
					t.Errorf("WWW-Authenticate = %q, want one: %v", challenge, wantChallenge)
				}
				if ev := tb.events.after(t, events); ev.Error != tc.wantKind {
					t.Errorf("audit error kind = %q, want %q", ev.Error, tc.wantKind)
				}
			})
		}
	}
}

func (l *eventLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// after waits for the event recorded after the first n (it is written after
// the response) and returns it.
func (l *eventLog) after(t *testing.T, n int) audit.Event {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		if len(l.events) > n {
			ev := l.events[n]
			l.mu.Unlock()
			return ev
		}
		l.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no audit event after the first %d", n)
	return audit.Event{}
}

// queryPolicy reads the query (request.query), so the exchange decodes it
// before authentication and the JWT extraction reads the token from that
// same map; it allows only alice, and only in env=prod.
const queryPolicy = `apiVersion: tollgate.dev/v1
kind: AuthorizationPolicy
metadata: {name: prod-alice, namespace: istio-system}
spec:
  action: ALLOW
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.test/alice"]}}]
    when: [{key: "request.query[env]", values: ["prod"]}]
`

// TestQueryTokenWithQueryPolicy: when both the JWT rules (access_token) and
// the policy (request.query) read the query, they read one decoding of the
// query the upstream receives: an escaped key, a repeated token, a ';' and a
// method-override pair (which the gateway strips before anyone reads the
// query) mean the same to both, and the policy judges the identity of the
// very token the upstream gets.
func TestQueryTokenWithQueryPolicy(t *testing.T) {
	au, valid, forged := queryJWT(t)
	tb := newTestbed(t, testbedOptions{authenticate: au, authorize: compileTestPolicies(t, queryPolicy)})
	tests := []struct {
		name       string
		target     string
		wantStatus int
		wantUser   string // X-User the upstream sees, when served
		wantQuery  string // the query the upstream sees, when served
	}{
		{name: "valid token", target: "/hello?access_token=" + valid + "&env=prod",
			wantStatus: http.StatusOK, wantUser: "alice", wantQuery: "access_token=" + valid + "&env=prod"},
		{name: "escaped parameter name", target: "/hello?access%5Ftoken=" + valid + "&env=prod",
			wantStatus: http.StatusOK, wantUser: "alice", wantQuery: "access%5Ftoken=" + valid + "&env=prod"},
		{name: "valid token, other env", target: "/hello?access_token=" + valid + "&env=dev", wantStatus: http.StatusForbidden},
		{name: "forged token", target: "/hello?access_token=" + forged + "&env=prod", wantStatus: http.StatusUnauthorized},
		{name: "forged token under an escaped name", target: "/hello?access%5Ftoken=" + forged + "&env=prod", wantStatus: http.StatusUnauthorized},
		{name: "no token", target: "/hello?env=prod", wantStatus: http.StatusForbidden},
		{name: "token twice", target: "/hello?access_token=" + valid + "&access_token=" + valid + "&env=prod", wantStatus: http.StatusUnauthorized},
		{name: "semicolon", target: "/hello?access_token=" + valid + "&env=prod;x=1", wantStatus: http.StatusBadRequest},
		// The override pair, with the forged token cloaked in it, is not
		// forwarded; the token left is the one both read and forward.
		{name: "method override pair dropped", target: "/hello?_method=DELETE;access_token=" + forged + "&access_token=" + valid + "&env=prod",
			wantStatus: http.StatusOK, wantUser: "alice", wantQuery: "access_token=" + valid + "&env=prod"},
	}
	for _, proto := range protocols {
		c := tb.client(proto.h2)
		for _, tc := range tests {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				hits := tb.hits.get()
				status, body, e := tb.get(c, tc.target)
				if status != tc.wantStatus {
					t.Fatalf("status = %d, want %d (body %s)", status, tc.wantStatus, body)
				}
				if tc.wantStatus != http.StatusOK {
					if got := tb.hits.get() - hits; got != 0 {
						t.Fatalf("refused request reached the upstream %d times", got)
					}
					return
				}
				if got := http.Header(e.Header).Get("X-User"); got != tc.wantUser {
					t.Errorf("upstream X-User = %q, want %q", got, tc.wantUser)
				}
				if _, q, _ := strings.Cut(e.RequestURI, "?"); q != tc.wantQuery {
					t.Errorf("upstream query = %q, want %q", q, tc.wantQuery)
				}
			})
		}
	}
}
