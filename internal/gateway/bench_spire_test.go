//go:build spire

package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/spiretest"
)

// BenchmarkIngressSVIDSource compares the ingress path (HTTPS client → gateway
// → mTLS upstream) with the gateway's SVID from files and from the Workload
// API. Both serve the same SPIRE-issued SVID, so any difference is the source:
// it should be none, since the SVID is read from memory, not per request.
//
//	TOLLGATE_REQUIRE_SPIRE=1 go test -tags spire -run '^$' -bench IngressSVIDSource -count 5 ./internal/gateway/
func BenchmarkIngressSVIDSource(b *testing.B) {
	env := spiretest.Start(b, spiretest.Options{TrustDomain: "example.org", SVIDTTL: 10 * time.Minute})
	env.CreateEntry(b, spireGatewayID, spiretest.UIDSelector())
	env.CreateEntry(b, spireUpstreamID, spiretest.UIDSelector())
	gwSVID := env.WaitForSVID(b, spireGatewayID)
	env.WaitForSVID(b, spireUpstreamID)
	up := startEcho(b, workloadSource(b, env, spireUpstreamID), spireGatewayID)
	route := echoRoute("up", "/", up.Addr(), spireUpstreamID)

	for _, bc := range []struct {
		name     string
		identity string
	}{
		{name: "files", identity: "  files: {cert: gateway.crt, key: gateway.key, bundle: bundle.crt}"},
		{name: "workloadapi", identity: "  workloadAPI: {socket: \"" + env.SocketAddr() + "\", spiffeID: \"" + spireGatewayID + "\"}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			roots := ingressCA(b, dir)
			writeSVID(b, dir, "gateway", gwSVID)
			writeFile(b, dir, "bundle.crt", env.BundlePEM())
			cfg, err := config.Load(writeFile(b, dir, "gateway.yaml", []byte(gatewayYAML(bc.identity, route, ""))))
			if err != nil {
				b.Fatal(err)
			}
			gw, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			if err := gw.Start(); err != nil {
				b.Fatal(err)
			}
			defer gw.Shutdown(context.Background())
			c := httpsClient(b, roots, false)
			url := "https://" + gw.IngressAddr().String() + "/bench"
			// Warm the pools: client→gateway and gateway→upstream handshakes are not measured.
			for range 64 {
				if status, body := get(b, c, url); status != http.StatusOK {
					b.Fatalf("status %d: %s", status, body)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			// Not timed: shutdown may wait for connections the client dialed but never used.
			b.StopTimer()
		})
	}
}
