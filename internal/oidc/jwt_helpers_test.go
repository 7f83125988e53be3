package oidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tollgate.dev/tollgate/internal/config"
)

// testKeys are generated once per test binary; nothing is committed.
type testKeys struct {
	rsa, attacker *rsa.PrivateKey
	ec            *ecdsa.PrivateKey
	ed            ed25519.PrivateKey
}

var getTestKeys = sync.OnceValue(func() *testKeys {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	a, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &testKeys{rsa: r, attacker: a, ec: e, ed: ed}
})

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// publicJWK renders a public key as a JWK map.
func publicJWK(kid string, pub crypto.PublicKey) map[string]any {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := k.Bytes()
		n := (len(b) - 1) / 2
		return map[string]any{"kty": "EC", "kid": kid, "crv": k.Curve.Params().Name, "x": enc(b[1 : 1+n]), "y": enc(b[1+n:])}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": enc(k)}
	}
	panic("unknown key type")
}

func jwksJSON(keys ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return string(b)
}

// defaultJWKS holds the legitimate issuer's RSA, EC and Ed25519 keys.
func defaultJWKS() string {
	k := getTestKeys()
	return jwksJSON(publicJWK("rsa1", &k.rsa.PublicKey), publicJWK("ec1", &k.ec.PublicKey), publicJWK("ed1", k.ed.Public()))
}

// signToken builds a compact JWS by hand, so tests can also craft headers no
// library would write.
func signToken(t testing.TB, header, claims map[string]any, key any) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := enc(hb) + "." + enc(pb)
	alg, _ := header["alg"].(string)
	m := jwt.GetSigningMethod(alg)
	if alg == "none" {
		return input + "."
	}
	if m == nil {
		return input + ".c2ln" // an alg no library signs with
	}
	sig, err := m.Sign(input, key)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return input + "." + enc(sig)
}

const (
	testIssuer   = "https://issuer.test"
	testAudience = "api"
)

// testNow is the fixed clock of every test.
var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func goodClaims() map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": testAudience, "azp": "web",
		"exp": testNow.Add(time.Hour).Unix(), "nbf": testNow.Add(-time.Minute).Unix(),
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func rsaToken(t testing.TB, claims map[string]any) string {
	return signToken(t, map[string]any{"alg": "RS256", "kid": "rsa1", "typ": "JWT"}, claims, getTestKeys().rsa)
}

// jwksServer serves body (changeable) and counts requests.
type jwksServer struct {
	*httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	body  string
	code  int
	delay time.Duration
}

func newJWKSServer(t testing.TB, tlsOn bool, body string) *jwksServer {
	s := &jwksServer{body: body, code: http.StatusOK}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, code, delay := s.body, s.code, s.delay
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	})
	if tlsOn {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body string, code int, delay time.Duration) {
	s.mu.Lock()
	s.body, s.code, s.delay = body, code, delay
	s.mu.Unlock()
}

// newTestKeyCache returns a cache whose client trusts srv (if TLS) and that
// is closed with the test.
func newTestKeyCache(t testing.TB, srv *httptest.Server, opts KeyCacheOptions) *KeyCache {
	if srv != nil && opts.Client == nil {
		opts.Client = srv.Client()
		opts.Client.CheckRedirect = checkJWKSRedirect
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := NewKeyCache(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// parseDocs splits YAML into documents as config.LoadDocuments does.
func parseDocs(t testing.TB, src string) []config.Document {
	t.Helper()
	nodes, err := config.ParseDocuments("ra.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var docs []config.Document
	for _, n := range nodes {
		d, err := config.DocumentOf("ra.yaml", n)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	return docs
}

func mustCompile(t testing.TB, src string, opts Options) *Authn {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	a, err := CompileRequestAuthn(parseDocs(t, src), opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return a
}

// waitKeys blocks until the key cache has fetched keys for every remote rule.
func waitKeys(t testing.TB, a *Authn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, r := range a.rules {
		for r.remote != nil && r.remote.usable() == nil {
			if time.Now().After(deadline) {
				t.Fatalf("keys for %s never fetched", r.remote.name())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func bearer(r *http.Request, tok string) *http.Request {
	r.Header.Add("Authorization", "Bearer "+tok)
	return r
}
