package oidc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
)

// testIdP is mockoidc on 127.0.0.1 with a few test hooks: the token endpoint's
// expires_in is set by the test (mockoidc sends nanoseconds), the discovery
// document may name an end_session_endpoint, and grant types are counted.
type testIdP struct {
	m          *mockoidc.MockOIDC
	mu         sync.Mutex // mockoidc's stores are unsynchronized: serialize its handlers
	expiresIn  atomic.Int64
	refreshes  atomic.Int32
	exchanges  atomic.Int32
	endSession string
}

func startIdP(t testing.TB, ln net.Listener, endSession string) *testIdP {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	idp := &testIdP{m: m, endSession: endSession}
	idp.expiresIn.Store(3600)
	if err := m.AddMiddleware(idp.middleware); err != nil {
		t.Fatal(err)
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return idp
}

func (idp *testIdP) queueUser(u *mockoidc.MockUser) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.m.QueueUser(u)
}

func (idp *testIdP) queueError(e *mockoidc.ServerError) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.m.QueueError(e)
}

func (idp *testIdP) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.mu.Lock()
		defer idp.mu.Unlock()
		switch r.URL.Path {
		case mockoidc.TokenEndpoint:
			_ = r.ParseForm()
			switch r.PostForm.Get("grant_type") {
			case "refresh_token":
				idp.refreshes.Add(1)
			case "authorization_code":
				idp.exchanges.Add(1)
			}
			idp.rewriteJSON(w, r, next, func(m map[string]any) {
				if _, ok := m["access_token"]; ok {
					m["expires_in"] = idp.expiresIn.Load()
				}
			})
		case mockoidc.DiscoveryEndpoint:
			idp.rewriteJSON(w, r, next, func(m map[string]any) {
				if idp.endSession != "" {
					m["end_session_endpoint"] = idp.endSession
				}
				m["token_endpoint_auth_methods_supported"] = []string{"client_secret_post"}
			})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (idp *testIdP) rewriteJSON(w http.ResponseWriter, r *http.Request, next http.Handler, edit func(map[string]any)) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	var m map[string]any
	if rec.Code == http.StatusOK && json.Unmarshal(body, &m) == nil {
		edit(m)
		body, _ = json.Marshal(m)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

// errorLog records the errors the Login logs, so tests can check why a request was refused.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (e *errorLog) Enabled(context.Context, slog.Level) bool { return true }
func (e *errorLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok {
			e.mu.Lock()
			e.errs = append(e.errs, err)
			e.mu.Unlock()
		}
		return true
	})
	return nil
}
func (e *errorLog) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *errorLog) WithGroup(string) slog.Handler      { return e }

// all returns a copy of the errors logged so far.
func (e *errorLog) all() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.errs)
}

func (e *errorLog) has(target error) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// gateway is an httptest TLS server with a Login in front of a tiny upstream that
// echoes who it was told the user is and which cookies reached it.
type gateway struct {
	srv    *httptest.Server
	login  *Login
	url    string
	log    *errorLog
	events *eventLog
}

// eventLog counts LoginConfig.OnEvent calls as "event/result".
type eventLog struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *eventLog) record(event, result string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[event+"/"+result]++
}

// count returns how often event/result was told.
func (e *eventLog) count(key string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[key]
}

type echo struct {
	Subject   string   `json:"sub"`
	Principal string   `json:"principal"`
	Groups    []string `json:"groups"`
	Cookie    string   `json:"cookie"`
	User      string   `json:"user"`
}

// testKeyIDs holds the id hints of the keys testKey has handed out: a test
// expecting ErrSealUnknownKey needs keys whose one-byte hints differ, which two
// random keys miss one time in 256. Keys sharing a hint are tested on purpose
// with sameIDKeys.
var testKeyIDs struct {
	sync.Mutex
	used [256]bool
}

// testKey returns a random session key whose id hint no other live testKey key
// (of a test still running) has.
func testKey(t testing.TB) []byte {
	t.Helper()
	testKeyIDs.Lock()
	defer testKeyIDs.Unlock()
	for range 100_000 {
		k := make([]byte, SessionKeyLen)
		if _, err := rand.Read(k); err != nil {
			t.Fatal(err)
		}
		if id := keyIDOf(t, k); !testKeyIDs.used[id] {
			testKeyIDs.used[id] = true
			t.Cleanup(func() {
				testKeyIDs.Lock()
				testKeyIDs.used[id] = false
				testKeyIDs.Unlock()
			})
			return k
		}
	}
	t.Fatal("testKey: no unused key id hint left")
	return nil
}

func keyIDOf(t testing.TB, k []byte) byte {
	t.Helper()
	sk, err := NewSessionKeys(k)
	if err != nil {
		t.Fatal(err)
	}
	return sk.keys[0].id
}

func writeSecret(t testing.TB, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startGateway(t testing.TB, idp *testIdP, edit func(*LoginConfig)) *gateway {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	keys, err := NewSessionKeys(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	elog, events := &errorLog{}, &eventLog{}
	cfg := LoginConfig{
		Provider: ProviderConfig{
			Name: "main", Issuer: idp.m.Issuer(), ClientID: idp.m.ClientID,
			ClientSecretFile: writeSecret(t, idp.m.ClientSecret),
			Scopes:           []string{"openid", "email", "profile", "groups"},
		},
		Keys:         keys,
		AllowedHosts: []string{srv.Listener.Addr().String()},
		Logger:       slog.New(elog),
		OnEvent:      events.record,
	}
	if edit != nil {
		edit(&cfg)
	}
	l, err := NewLogin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.ServeReserved(w, r) {
			return
		}
		a, out := l.Authenticate(w, r)
		if out != Authenticated {
			l.Challenge(w, r, out)
			return
		}
		l.StripCookies(r.Header)
		e := echo{Subject: a.Subject, Principal: a.Principal, Cookie: r.Header.Get("Cookie"), User: ClaimHeaders(a).Get(HeaderUser)}
		if gs, ok := a.Claims["groups"].([]any); ok {
			for _, g := range gs {
				e.Groups = append(e.Groups, fmt.Sprint(g))
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e)
	})
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil && edit == nil {
		t.Fatal(err)
	}
	return &gateway{srv: srv, login: l, url: srv.URL, log: elog, events: events}
}

// browser is a client with a cookie jar that trusts the gateway's test certificate
// and does not follow redirects by itself.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T, g *gateway) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{
		Transport:     g.srv.Client().Transport,
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &browser{t: t, c: c}
}

// get sends one request as a page navigation (Accept: text/html) and returns the
// response with its body read.
func (b *browser) get(u string) (*http.Response, []byte) {
	b.t.Helper()
	return b.do(http.MethodGet, u, "text/html,application/xhtml+xml")
}

// do sends one request with the extra headers hdr (name, value pairs).
func (b *browser) do(method, u, accept string, hdr ...string) (*http.Response, []byte) {
	b.t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp, body
}

// logout submits the logout page's form as a browser does: a same-origin POST.
func (b *browser) logout(g *gateway) (*http.Response, []byte) {
	b.t.Helper()
	return b.do(http.MethodPost, g.url+"/.tollgate/oidc/logout", "text/html",
		"Origin", g.url, "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "navigate",
		"Content-Type", "application/x-www-form-urlencoded")
}

// follow walks redirects (at most 10 hops) and returns the last response.
func (b *browser) follow(u string) (*http.Response, []byte, []string) {
	b.t.Helper()
	var hops []string
	for range 10 {
		hops = append(hops, u)
		resp, body := b.get(u)
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
			return resp, body, hops
		}
		next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			b.t.Fatal(err)
		}
		u = next.String()
	}
	b.t.Fatalf("too many redirects: %v", hops)
	return nil, nil, nil
}

// cookie returns the jar's cookie name for the gateway.
func (b *browser) cookieNames(g *gateway) []string {
	u, _ := url.Parse(g.url)
	var names []string
	for _, c := range b.c.Jar.Cookies(u) {
		names = append(names, c.Name)
	}
	return names
}

func decodeEcho(t *testing.T, body []byte) echo {
	t.Helper()
	var e echo
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&e); err != nil {
		t.Fatalf("upstream body %q: %v", body, err)
	}
	return e
}

func hasPrefixAny(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
