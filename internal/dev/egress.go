package dev

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/identity"
)

// The egress demo's names.
const (
	// CurlID is the workload identity dev mode writes for curl.
	CurlID = "spiffe://dev.tollgate/ns/demo/sa/curl"
	// APIHost is the demo external API's name; dev mode's resolver maps it to
	// the loopback address the API listens on.
	APIHost = "api.demo.test"
	// CurlSVIDTTL is how long the written curl SVID is valid: files are not
	// rotated, so it outlives a dev session.
	CurlSVIDTTL = 24 * time.Hour
	// apiIP is where the demo API listens, and the one internal address the
	// SSRF guard admits (an exact /32: it is also the gateway's own address).
	apiIP = "127.0.0.1"
)

//go:embed assets/egress-demo.yaml
var egressDemoPolicy string

var egressDemoTemplate = template.Must(template.New("egress-demo").Parse(egressDemoPolicy))

// egressDemo is the egress half of dev mode: the demo API, the curl SVID and
// the documents that register and authorize the API.
type egressDemo struct {
	api        *API
	policyFile string
	curlCert   string
	curlKey    string
}

// startEgressDemo writes the curl workload's SVID into dir, starts the demo
// API with a certificate for APIHost from ca, and writes the ServiceEntry,
// DestinationRule and AuthorizationPolicy for it into dir/policies.
func startEgressDemo(dir string, ca *identity.DevCA, caFile string, log *slog.Logger) (*egressDemo, error) {
	d := &egressDemo{
		policyFile: filepath.Join(dir, "policies", "egress-demo.yaml"),
		curlCert:   filepath.Join(dir, "curl.crt"),
		curlKey:    filepath.Join(dir, "curl.key"),
	}
	d.curlCert, _ = filepath.Abs(d.curlCert)
	d.curlKey, _ = filepath.Abs(d.curlKey)
	svid, err := ca.IssueSVID(spiffeid.RequireFromString(CurlID), CurlSVIDTTL)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return nil, err
	}
	if err := writePair(d.curlCert, certPEM, d.curlKey, keyPEM); err != nil {
		return nil, fmt.Errorf("dev directory: %w", err)
	}
	cert, err := ca.IssueServerCert([]string{APIHost}, nil, 30*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if d.api, err = StartAPI(net.JoinHostPort(apiIP, "0"), cert, log); err != nil {
		return nil, fmt.Errorf("demo API: %w", err)
	}
	_, port, _ := net.SplitHostPort(d.api.Addr())
	var doc bytes.Buffer
	err = egressDemoTemplate.Execute(&doc, map[string]string{
		"Host": APIHost, "Port": port, "CAFile": caFile,
		// Istio writes principals without the scheme.
		"Principal": strings.TrimPrefix(CurlID, "spiffe://"),
	})
	if err == nil {
		err = os.WriteFile(d.policyFile, doc.Bytes(), 0o644)
	}
	if err != nil {
		d.api.Close()
		return nil, fmt.Errorf("dev directory: %w", err)
	}
	return d, nil
}

// config is the egress section that serves the demo: only the demo API's
// address is admitted past the SSRF guard.
func (d *egressDemo) config(listen string) *config.Egress {
	return &config.Egress{Listen: listen, AllowCIDRs: []string{apiIP + "/32"}}
}

// resolver maps APIHost to the demo API's address and asks the system for
// every other name (a destination added to the demo policy resolves as it
// would in production, and the SSRF guard judges the answer).
type resolver struct{}

func (resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if host == APIHost {
		return []netip.Addr{netip.MustParseAddr(apiIP)}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// ProxyVerifiable reports whether src's SVID names "localhost" (a DNS SAN
// beside its SPIFFE ID), so that a client such as curl, which checks a proxy's
// certificate by host name, can verify the egress listener at
// https://localhost. identity.DevSource issues SVIDs with the URI SAN only.
func ProxyVerifiable(src identity.Source) bool {
	svid, err := src.GetX509SVID()
	return err == nil && len(svid.Certificates) > 0 && svid.Certificates[0].VerifyHostname("localhost") == nil
}

// printEgress writes the egress half of the instructions. verifiable is
// whether curl can check the gateway's certificate as a proxy for
// "localhost".
func (e *Env) printEgress(w io.Writer, verifiable bool) {
	d := e.egress
	proxyTrust := "--proxy-cacert " + e.CAFile
	note := ""
	if !verifiable {
		proxyTrust = "--proxy-insecure"
		note = `
  # --proxy-insecure: DEV ONLY. The egress listener presents the gateway's SVID,
  # which names it by SPIFFE ID (` + GatewayID + `)
  # and carries no DNS name, so curl can't check it as the proxy "localhost".
  # The gateway still checks curl's SVID. Go clients verify the gateway's
  # SPIFFE ID instead (docs/egress.md, "Call out").
`
	}
	c := fmt.Sprintf("curl --proxy %s %s --proxy-cert %s --proxy-key %s", e.EgressURL, proxyTrust, d.curlCert, d.curlKey)
	fmt.Fprintf(w, `Egress: workloads call out through the gateway as an HTTPS proxy, with their SVIDs.

  egress    %s   (mTLS: callers present an SVID of %s)
  workload  %s   (%s, curl.key; valid %s)
  demo API  https://%s -> %s   (HTTPS, certificate from the dev CA; echoes each call, credentials masked)
  policy    %s   (ServiceEntry, DestinationRule, AuthorizationPolicy)
%s
  # allowed: the gateway originates TLS to the demo API, which echoes the call
  %s http://%s/v1/hello

  # denied by path: the policy allows GET on /v1/* only (403)
  %s http://%s/v2/hello

  # denied by query: mode=debug is refused (403)
  %s 'http://%s/v1/hello?mode=debug'

  # outside the registry: no ServiceEntry declares it (403, X-Tollgate-Error: destination_not_registered)
  %s http://example.com/

  # From Go: http.Transport{Proxy: %s} with curl.crt/curl.key as the
  # client certificate (HTTPS_PROXY-style; docs/egress.md shows the code).

Audit events are printed to standard output, one JSON line per request (kind
"ingress" or "egress").
Ctrl-C stops the gateway.

`, e.EgressURL, TrustDomain, CurlID, d.curlCert, CurlSVIDTTL, APIHost, d.api.Addr(), d.policyFile, note,
		c, APIHost, c, APIHost, c, APIHost, c, e.EgressURL)
}
