package ingress

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"testing"
	"time"

	"tollgate.dev/tollgate/internal/request"

	"github.com/golang-jwt/jwt/v5"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/benchdata"
	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/oidc"
)

// BenchmarkIngress measures the whole ingress path in one process: an HTTPS
// client, the gateway (normalize, route, sanitize, audit, proxy) and an mTLS
// upstream that checks the gateway's SPIFFE ID, with keep-alive connections.
// "bare" is the same traffic through a bare httputil.ReverseProxy with the same
// TLS on both legs: Go's floor. scripts/bench.sh prints the gateway/bare ratio.
func BenchmarkIngress(b *testing.B) {
	small := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	}
	for _, proto := range []struct {
		name string
		h2   bool
	}{{"h1", false}, {"h2", true}} {
		b.Run("proxy=bare/proto="+proto.name, func(b *testing.B) {
			tb := newTestbed(b, testbedOptions{upstreamHandler: small, quiet: true})
			up, _ := url.Parse(tb.upstream.URL)
			rp := &httputil.ReverseProxy{
				Rewrite: func(pr *httputil.ProxyRequest) {
					pr.SetURL(up)
					pr.Out.Host = pr.In.Host
					pr.SetXForwarded()
				},
				Transport: tb.transport,
			}
			front := serveTLS(b, rp, tb.frontTLS)
			runLoad(b, tb, front.URL+"/api/v1/items/42?x=1", proto.h2)
		})
		b.Run("proxy=gateway/proto="+proto.name, func(b *testing.B) {
			lg, _ := audit.New(audit.Config{Sinks: []audit.Sink{audit.NewWriterSink(io.Discard)}})
			b.Cleanup(func() { lg.Close() })
			tb := newTestbed(b, testbedOptions{upstreamHandler: small, quiet: true, audit: lg})
			runLoad(b, tb, tb.front.URL+"/api/v1/items/42?x=1", proto.h2)
		})
		// The audit trail's cost (issue 10): no audit at all, the journal
		// (group-commit fsync) with one sink fed from it, and fail-closed,
		// where each request waits for its decision record's fsync.
		// scripts/bench-audit.sh compares them with proxy=gateway+noaudit.
		b.Run("proxy=gateway+noaudit/proto="+proto.name, func(b *testing.B) {
			tb := newTestbed(b, testbedOptions{upstreamHandler: small, quiet: true, audit: nopRecorder{}})
			runLoad(b, tb, tb.front.URL+"/api/v1/items/42?x=1", proto.h2)
		})
		for _, failClosed := range []bool{false, true} {
			name := "proxy=gateway+journal/proto="
			if failClosed {
				name = "proxy=gateway+failclosed/proto="
			}
			b.Run(name+proto.name, func(b *testing.B) {
				j, err := audit.OpenJournal(audit.JournalOptions{Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				lg, err := audit.New(audit.Config{Sinks: []audit.Sink{audit.NewWriterSink(io.Discard)}, Journal: j, FailClosed: failClosed})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { lg.Close() })
				tb := newTestbed(b, testbedOptions{upstreamHandler: small, quiet: true, audit: lg})
				runLoad(b, tb, tb.front.URL+"/api/v1/items/42?x=1", proto.h2)
				// Group commit at work: fsyncs per request (1/x requests share one).
				b.ReportMetric(float64(lg.Stats().Commits)/float64(b.N), "fsyncs/op")
			})
		}
		b.Run("proxy=gateway+jwt/proto="+proto.name, func(b *testing.B) {
			lg, _ := audit.New(audit.Config{Sinks: []audit.Sink{audit.NewWriterSink(io.Discard)}})
			b.Cleanup(func() { lg.Close() })
			authn, token := benchJWT(b)
			tb := newTestbed(b, testbedOptions{upstreamHandler: small, quiet: true, audit: lg, authenticate: authn})
			runLoad(b, tb, tb.front.URL+"/api/v1/items/42?x=1", proto.h2, "Authorization", "Bearer "+token)
		})
		// The full path of the side-by-side comparison (scripts/bench-peers.sh):
		// a bearer JWT, 100 policy rules and every event audited to a file.
		b.Run("proxy=gateway+full/proto="+proto.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
			if err != nil {
				b.Fatal(err)
			}
			lg, _ := audit.New(audit.Config{Sinks: []audit.Sink{audit.NewWriterSink(f)}})
			b.Cleanup(func() { lg.Close(); f.Close() })
			authn, token := benchJWT(b)
			tb := newTestbed(b, testbedOptions{upstreamHandler: small, quiet: true, audit: lg, authenticate: authn, authorize: compileTestPolicies(b, benchdata.Policies(100))})
			runLoad(b, tb, tb.front.URL+"/api/v1/items/42?x=1", proto.h2, "Authorization", "Bearer "+token)
		})
		b.Run("proxy=gateway+policy100/proto="+proto.name, func(b *testing.B) {
			lg, _ := audit.New(audit.Config{Sinks: []audit.Sink{audit.NewWriterSink(io.Discard)}})
			b.Cleanup(func() { lg.Close() })
			tb := newTestbed(b, testbedOptions{upstreamHandler: small, quiet: true, audit: lg, authorize: compileTestPolicies(b, benchdata.Policies(100))})
			runLoad(b, tb, tb.front.URL+"/api/v1/items/42?x=1", proto.h2)
		})
	}
}

// benchConns is how many clients run the load at once: 8 by default (4 per
// core on the 2-core machines the figures come from), 64 like wrk's
// default in the peers' comparisons (scripts/bench-audit.sh CONNS=64).
var benchConns = flag.Int("conns", 8, "BenchmarkIngress: concurrent clients")

func runLoad(b *testing.B, tb *testbed, target string, h2 bool, hdr ...string) {
	c := tb.client(h2)
	get := func() (*http.Response, error) {
		req, err := http.NewRequest("GET", target, nil)
		if err != nil {
			return nil, err
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return c.Do(req)
	}
	tr := c.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 64
	// Warm up connections so handshakes are not measured.
	for range 8 {
		resp, err := get()
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	// -conns clients in all (RunParallel runs a multiple of GOMAXPROCS).
	b.SetParallelism(max(1, *benchConns/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := get()
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	// CPU per request of the whole process (client, gateway, upstream; user
	// and kernel, fsync included): steadier than req/s on a shared machine,
	// and what a variant costs whether or not it waits.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkRouterMatch(b *testing.B) {
	up, _ := url.Parse("https://127.0.0.1:1")
	var routes []*Route
	for i := range 100 {
		routes = append(routes, &Route{Name: fmt.Sprint(i), Host: fmt.Sprintf("svc%d.example.com", i), PathPrefix: "/api", Upstream: up})
	}
	rt := NewRouter(routes)
	b.ReportAllocs()
	for b.Loop() {
		if rt.Match(request.Authority{Host: "svc57.example.com"}, "/api/v1/x", 443) == nil {
			b.Fatal("no match")
		}
	}
}

// benchJWT returns an authenticator for an RS256 issuer with an inline JWKS and a
// valid token for it (a realistic size: a few claims and groups).
func benchJWT(b *testing.B) (*oidc.Authenticator, string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
		b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))
	doc := fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: istio-system}\nspec:\n  jwtRules:\n  - issuer: https://issuer.test\n    audiences: [api]\n    jwks: '%s'\n    outputClaimToHeaders: [{header: x-user, claim: sub}]\n", jwks)
	nodes, err := config.ParseDocuments("authn.yaml", []byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	an, err := oidc.CompileRequestAuthn([]config.Document{{File: "authn.yaml", APIVersion: "security.istio.io/v1", Kind: "RequestAuthentication", Node: nodes[0]}}, oidc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": "https://issuer.test", "sub": "alice", "aud": "api", "groups": []string{"dev", "admins"},
		"email": "alice@example.org", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	return an.ForListener(nil), s
}

// nopRecorder is no audit at all: the baseline of the audit variants.
type nopRecorder struct{}

func (nopRecorder) Decided(*audit.Event) error { return nil }
func (nopRecorder) Completed(*audit.Event)     {}
