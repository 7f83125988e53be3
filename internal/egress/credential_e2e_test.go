//go:build e2e

// End-to-end credential injection with a real, certified OpenID provider
// (oidc-provider on npm, test/oidcprovider) issuing client-credentials tokens.
// Setup: scripts/oidc/install.sh. Run: go test -tags e2e -run E2E ./internal/egress/
// Skips when the provider's node_modules are missing, unless
// TOLLGATE_REQUIRE_E2E is set (then it fails).

package egress

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/oidc/oidctest"
	"tollgate.dev/tollgate/internal/testkit"
)

// countingTransport counts the requests it sends.
type countingTransport struct {
	base *http.Transport
	n    atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func TestE2ECredentialsOAuth2ClientCredentials(t *testing.T) {
	provDir := oidctest.ProviderDir(t)
	const ccClient = "tollgate-egress"
	ccSecret := rand.Text()
	issuer := oidctest.StartProvider(t, provDir,
		"REDIRECT_URIS=http://127.0.0.1/unused", "CLIENT_SECRET="+rand.Text(),
		"CC_CLIENT_ID="+ccClient, "CC_CLIENT_SECRET="+ccSecret, "TOKEN_TTL=300")

	var disco struct {
		TokenEndpoint         string `json:"token_endpoint"`
		IntrospectionEndpoint string `json:"introspection_endpoint"`
	}
	getJSON(t, http.DefaultClient, issuer+"/.well-known/openid-configuration", &disco)
	if disco.TokenEndpoint == "" || disco.IntrospectionEndpoint == "" {
		t.Fatalf("discovery: token endpoint %q, introspection endpoint %q", disco.TokenEndpoint, disco.IntrospectionEndpoint)
	}

	// introspect asks the provider about a token, as the client itself.
	introspect := func(token string) (active bool, clientID, scope string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, disco.IntrospectionEndpoint,
			strings.NewReader(url.Values{"token": {token}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(ccClient, ccSecret)
		var r struct {
			Active   bool   `json:"active"`
			ClientID string `json:"client_id"`
			Scope    string `json:"scope"`
		}
		doJSON(t, http.DefaultClient, req, &r)
		return r.Active, r.ClientID, r.Scope
	}

	// The "external API": a loopback server that records what reached it.
	var mu sync.Mutex
	var seen []http.Header
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
	}))
	defer api.Close()
	defer http.DefaultClient.CloseIdleConnections()

	dir := t.TempDir()
	tr := &countingTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
	defer tr.base.CloseIdleConnections()
	reloads := make(chan reloadReport, 16)
	c := newCreds(t, CredentialOptions{
		Headers: []HeaderFromFile{{Name: "X-Api-Key", File: writeSecretFile(t, dir, "key", "k-e2e\n")}},
		OAuth2: &OAuth2Options{
			TokenURL:         disco.TokenEndpoint,
			ClientID:         ccClient,
			ClientSecretFile: writeSecretFile(t, dir, "secret", ccSecret+"\n"),
			Scopes:           []string{"api:read"},
			// 300 s tokens, replaced 298 s early: a new one every 2 s.
			RefreshBefore: 298 * time.Second,
			HTTPClient:    &http.Client{Transport: tr, Timeout: 10 * time.Second},
		},
		PollInterval: 20 * time.Millisecond,
		Settle:       20 * time.Millisecond,
		OnReload:     func(f string, err error) { reloads <- reloadReport{f, err} },
	})

	// send forwards a workload's request to the API with the credentials
	// applied, and returns the Authorization the API received.
	send := func() string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, api.URL+"/v1/things", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer workload-must-not-hold-this")
		req.Header["x-api-key"] = []string{"workload-key"}
		if err := c.Apply(t.Context(), req.Header); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		got := seen[len(seen)-1]
		if k := got.Values("X-Api-Key"); len(k) != 1 || k[0] != "k-e2e" {
			t.Fatalf("API received X-Api-Key %q, want just the injected one", k)
		}
		a := got.Values("Authorization")
		if len(a) != 1 {
			t.Fatalf("API received Authorization %q, want one value", a)
		}
		return a[0]
	}

	// Concurrent first requests share one token request.
	var wg sync.WaitGroup
	auths := make([]string, 20)
	for i := range auths {
		wg.Go(func() { auths[i] = send() })
	}
	wg.Wait()
	if n := tr.n.Load(); n != 1 {
		t.Errorf("%d concurrent requests made %d token requests, want 1", len(auths), n)
	}
	tok1, ok := strings.CutPrefix(auths[0], "Bearer ")
	if !ok || tok1 == "" || strings.Contains(tok1, "workload") {
		t.Fatalf("API received Authorization %q, want the provider's bearer token", auths[0])
	}
	for i, a := range auths {
		if a != auths[0] {
			t.Fatalf("request %d carried %q, request 0 %q: want the same cached token", i, a, auths[0])
		}
	}
	if active, cid, scope := introspect(tok1); !active || cid != ccClient || scope != "api:read" {
		t.Fatalf("introspection of the injected token: active %v, client %q, scope %q; want true, %q, api:read", active, cid, scope, ccClient)
	}

	// Past its refresh time the token is replaced by a new one, also the
	// provider's.
	time.Sleep(2100 * time.Millisecond)
	a2 := send()
	tok2, _ := strings.CutPrefix(a2, "Bearer ")
	if tok2 == tok1 || tr.n.Load() != 2 {
		t.Fatalf("after the refresh time: token changed %v, %d token requests; want a new token from a second request", tok2 != tok1, tr.n.Load())
	}
	if active, cid, _ := introspect(tok2); !active || cid != ccClient {
		t.Fatalf("introspection of the refreshed token: active %v, client %q", active, cid)
	}
	if got := send(); got != a2 {
		t.Fatalf("next request carried a different token; want the cached one")
	}

	// A wrong client secret: the provider refuses, Apply fails closed
	// without the secret in its error; once the file holds the right
	// secret, tokens come again. The gateway's own HTTP client is used.
	wrongFile := writeSecretFile(t, dir, "wrong", "wrong-"+ccSecret+"\n")
	bad := newCreds(t, CredentialOptions{
		OAuth2: &OAuth2Options{
			TokenURL: disco.TokenEndpoint, ClientID: ccClient, ClientSecretFile: wrongFile, Scopes: []string{"api:read"},
		},
		PollInterval: 20 * time.Millisecond,
		Settle:       20 * time.Millisecond,
		OnReload:     func(f string, err error) { reloads <- reloadReport{f, err} },
	})
	h := http.Header{"Authorization": {"Bearer workload-must-not-hold-this"}}
	err := bad.Apply(t.Context(), h)
	if !errors.Is(err, ErrCredentialUnavailable) || !strings.Contains(err.Error(), `"invalid_client"`) {
		t.Fatalf("Apply with a wrong client secret: %v, want a CredentialError with invalid_client", err)
	}
	if strings.Contains(err.Error(), ccSecret) || len(h) != 0 {
		t.Fatalf("failed Apply: error %q, header %v; want no secret and no Authorization", err, h)
	}
	testkit.WriteFileAtomic(t, wrongFile, []byte(ccSecret+"\n"))
	if err := waitReload(t, reloads, wrongFile); err != nil {
		t.Fatal(err)
	}
	h = http.Header{}
	if err := bad.Apply(t.Context(), h); err != nil {
		t.Fatalf("Apply after the secret was fixed: %v", err)
	}
	tok3, _ := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if active, cid, _ := introspect(tok3); !active || cid != ccClient {
		t.Fatalf("introspection of the token got with the rotated secret: active %v, client %q", active, cid)
	}
	bad.Close() // closes the idle connections of its own client before the leak check
}

func getJSON(t *testing.T, client *http.Client, u string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	doJSON(t, client, req, v)
}

func doJSON(t *testing.T, client *http.Client, req *http.Request, v any) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s", req.Method, req.URL, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
}
