package dev

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/listener"
	"tollgate.dev/tollgate/internal/telemetry"
)

// The dev trust domain and identities.
const (
	TrustDomain = "dev.tollgate"
	GatewayID   = "spiffe://dev.tollgate/ns/tollgate/sa/gateway"
	EchoID      = "spiffe://dev.tollgate/ns/demo/sa/echo"
	// SVIDTTL is short so that rotation is visible in a dev session.
	SVIDTTL = 5 * time.Minute
)

//go:embed assets/demo-policy.yaml
var demoPolicy []byte

// Options configure dev mode.
type Options struct {
	// Dir receives the CA certificate, the curl workload's SVID and the demo
	// policies.
	Dir string
	// Listen is the ingress address; Admin the admin listener's; Egress the
	// egress listener's ("" picks a free loopback port).
	Listen string
	Admin  string
	Egress string
	Logger *slog.Logger
	// Out receives the instructions (copy-paste curl lines).
	Out io.Writer
	// Audit receives audit events (one JSON line each).
	Audit io.Writer
	// Ready, if set, is called with the running environment once it serves.
	Ready func(*Env)
	// LogStats is the gateway's gateway.Options.LogStats.
	LogStats func() telemetry.LogStats
}

// Env is a running dev environment.
type Env struct {
	Gateway *gateway.Gateway
	CAFile  string
	URL     string
	// EgressURL is the egress listener as a proxy URL (https://localhost:port).
	EgressURL string
	// CurlCert and CurlKey are the SVID files of the demo workload CurlID.
	CurlCert, CurlKey string
	// APIAddr is where the demo external API (APIHost) listens.
	APIAddr string
	// Token is a JWT for DevUser from the dev issuer, accepted on /api/*.
	Token   string
	ca      *identity.DevCA
	closers []func() error
	egress  *egressDemo
}

// Start brings dev mode up and returns once it serves. Close the Env to stop
// it; the caller handles signals (SIGHUP: Env.Gateway.Reload).
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	// env is not a named result: `return nil, err` would set that to nil
	// before this deferred Close, and the parts started so far (the demo
	// upstream, the SVID sources) must still be stopped.
	env := &Env{}
	defer func() {
		if err != nil {
			env.Close(context.Background())
		}
	}()
	if err := os.MkdirAll(filepath.Join(o.Dir, "policies"), 0o755); err != nil {
		return nil, fmt.Errorf("dev directory: %w", err)
	}
	ca, err := identity.NewDevCA(TrustDomain)
	if err != nil {
		return nil, err
	}
	env.ca = ca
	env.CAFile, _ = filepath.Abs(filepath.Join(o.Dir, "ca.crt"))
	if err := os.WriteFile(env.CAFile, ca.RootPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("dev directory: %w", err)
	}
	policyFile := filepath.Join(o.Dir, "policies", "demo.yaml")
	if err := os.WriteFile(policyFile, demoPolicy, 0o644); err != nil {
		return nil, fmt.Errorf("dev directory: %w", err)
	}
	iss, err := NewIssuer()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "policies", "dev-issuer.yaml"), iss.RequestAuthentication(), 0o644); err != nil {
		return nil, fmt.Errorf("dev directory: %w", err)
	}
	if env.Token, err = iss.Token(DevUser, []string{"dev"}, DevTokenTTL); err != nil {
		return nil, err
	}

	// The gateway's SVID also names localhost, so that curl, which checks a
	// proxy by name, can verify the egress listener with the dev CA.
	gwSrc, err := identity.NewDevSourceWithNames(ca, spiffeid.RequireFromString(GatewayID), SVIDTTL,
		identity.SVIDNames{DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}})
	if err != nil {
		return nil, err
	}
	env.closers = append(env.closers, gwSrc.Close)
	echoSrc, err := identity.NewDevSource(ca, spiffeid.RequireFromString(EchoID), SVIDTTL)
	if err != nil {
		return nil, err
	}
	env.closers = append(env.closers, echoSrc.Close)
	onlyGateway, _ := identity.ParseMatcher([]string{GatewayID})
	echo, err := StartEcho("127.0.0.1:0", echoSrc, onlyGateway, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("demo upstream: %w", err)
	}
	env.closers = append(env.closers, echo.Close)

	eg, err := startEgressDemo(o.Dir, ca, env.CAFile, o.Logger)
	if err != nil {
		return nil, err
	}
	env.closers = append(env.closers, eg.api.Close)
	env.egress, env.CurlCert, env.CurlKey, env.APIAddr = eg, eg.curlCert, eg.curlKey, eg.api.Addr()
	if o.Egress == "" {
		o.Egress = "127.0.0.1:0"
	}

	cert, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, 30*24*time.Hour)
	if err != nil {
		return nil, err
	}
	certs, err := listener.NewStaticCertStore(cert)
	if err != nil {
		return nil, err
	}

	cfg := &config.Gateway{
		APIVersion: config.APIVersion, Kind: config.KindGateway, File: "(dev)",
		Identity: config.Identity{TrustDomain: TrustDomain},
		Ingress: &config.Ingress{
			Listen: o.Listen,
			Routes: []config.Route{{
				Name: "demo", Host: "*", PathPrefix: "/",
				Upstream: config.Upstream{URL: "https://" + echo.Addr(), SPIFFEIDs: []string{EchoID}},
			}},
		},
		Egress: eg.config(o.Egress),
		Admin:  config.Admin{Listen: o.Admin},
		Policy: config.Policy{Files: []string{filepath.Join(o.Dir, "policies")}, PollInterval: time.Second},
		Audit:  config.Audit{Sinks: []config.AuditSink{{Stdout: true}}},
	}
	cfg.ApplyDefaults()
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: o.Logger, Identity: gwSrc, Certs: certs, Stdout: o.Audit, LogStats: o.LogStats, Built: true,
		EgressResolver: resolver{}})
	if err != nil {
		return nil, err
	}
	if err := gw.Start(); err != nil {
		gw.Shutdown(context.Background())
		return nil, err
	}
	env.Gateway = gw
	_, port, _ := net.SplitHostPort(gw.IngressAddr().String())
	env.URL = "https://localhost:" + port
	_, port, _ = net.SplitHostPort(gw.EgressAddr().String())
	env.EgressURL = "https://localhost:" + port
	env.printInstructions(o.Out, policyFile)
	env.printEgress(o.Out, ProxyVerifiable(gwSrc))
	if o.Ready != nil {
		o.Ready(env)
	}
	return env, nil
}

// Close shuts the gateway down and stops the demo upstream.
func (e *Env) Close(ctx context.Context) error {
	var err error
	if e.Gateway != nil {
		err = e.Gateway.Shutdown(ctx)
	}
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	return err
}

func (e *Env) printInstructions(w io.Writer, policyFile string) {
	c := fmt.Sprintf("curl --cacert %s", e.CAFile)
	fmt.Fprintf(w, `
Tollgate dev mode is running.

  ingress   %s   (TLS; certificate for localhost signed by %s)
  admin     http://%s   (/healthz /readyz /metrics)
  identity  %s   (dev trust domain, %s SVIDs, renewed at half-life)
  upstream  demo echo service as %s, accepting only the gateway's ID
  policy    %s   (edit it: reloads within a second)

Try:

  # allowed: the echo service answers, "caller" is the gateway's SPIFFE ID
  %s %s/hello

  # denied by the demo DENY policy on /admin/*: 403 with a request id
  %s %s/admin/users

  # /api/* requires a JWT. The dev issuer's token for %q passes (200; the echo
  # shows x-dev-user). It is valid for %s and only until dev mode restarts.
  %s -H "Authorization: Bearer %s" %s/api/items

  # no token: anonymous, denied by the demo policy require-jwt (403)
  %s %s/api/items

  # a token that does not verify: refused by authentication (401)
  %s -H "Authorization: Bearer not-a-jwt" %s/api/items

`, e.URL, e.CAFile, e.Gateway.AdminAddr(), GatewayID, SVIDTTL, EchoID, policyFile, c, e.URL, c, e.URL,
		DevUser, DevTokenTTL, c, e.Token, e.URL, c, e.URL, c, e.URL)
}
