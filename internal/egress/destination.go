package egress

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/request"
)

// Mode is how the gateway reaches a destination port.
type Mode uint8

const (
	// ModeOriginate: the workload speaks plain HTTP to the gateway, inside
	// its mTLS connection; the gateway speaks HTTPS to the destination,
	// verifying its certificate, so it sees (and judges) method, path and
	// query. Istio: a DestinationRule with tls.mode SIMPLE.
	ModeOriginate Mode = iota + 1
	// ModeMutual is ModeOriginate presenting a configured client
	// certificate. Istio: tls.mode MUTUAL.
	ModeMutual
	// ModePassthrough: the workload opens a CONNECT tunnel and speaks TLS to
	// the destination itself; the gateway judges host, port and the SNI of
	// the tunnelled ClientHello. Istio: a TLS or HTTPS port without a
	// DestinationRule that originates.
	ModePassthrough
)

var modeNames = [...]string{ModeOriginate: "originate", ModeMutual: "mutual", ModePassthrough: "passthrough"}

func (m Mode) String() string {
	if m >= ModeOriginate && m <= ModePassthrough {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// TLS is how the gateway speaks TLS to a destination it originates to.
type TLS struct {
	// SNI is the server name sent; the destination's host by default.
	SNI string
	// CACertificates is a PEM file of roots to verify the destination
	// against; empty: the system roots.
	CACertificates string
	// ClientCertificate and PrivateKey are PEM files, for ModeMutual.
	ClientCertificate, PrivateKey string
	// SubjectAltNames, when set, must include a name of the destination's
	// certificate besides the usual host check.
	SubjectAltNames []string
}

// Port is one port of a destination and how it is reached.
type Port struct {
	// Number is the port the workload asks for.
	Number int
	// Target is the port the gateway dials (ServiceEntry targetPort; Number
	// when unset). TLS origination from port 80 to 443 is the usual case.
	Target int
	// Protocol is the ServiceEntry protocol name (HTTP, HTTPS, TLS, ...).
	Protocol string
	Mode     Mode
	// TLS is set for ModeOriginate and ModeMutual.
	TLS *TLS
	// tlsConfig is TLS made usable (files read once, at load).
	tlsConfig *tls.Config
	// hostPort is "host:Target" of an exact host, formatted once at load
	// ("" for a wildcard destination, whose host is the request's).
	hostPort string
	// origin is "https://" + hostPort, for the audit record.
	origin string
}

// targetOrigin is the URL origin a call to host on this port is sent to.
func (p *Port) targetOrigin(host string) string {
	if p.origin != "" {
		return p.origin
	}
	return "https://" + p.targetHostPort(host)
}

// targetHostPort is the "host:port" a call to host on this port dials.
func (p *Port) targetHostPort(host string) string {
	if p.hostPort != "" {
		return p.hostPort
	}
	return net.JoinHostPort(host, strconv.Itoa(p.Target))
}

// clientConfig reads t's files and returns the TLS client settings for a
// destination: TLS 1.2 or later; the destination's certificate verified
// against CACertificates (or, when empty, the system roots) for the name the
// request asked for; with SubjectAltNames, one of them must be among the
// certificate's DNS names too; the client certificate for ModeMutual.
func (t *TLS) clientConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CACertificates != "" {
		pem, err := os.ReadFile(t.CACertificates)
		if err != nil {
			return nil, fmt.Errorf("caCertificates: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caCertificates: no PEM certificate in %s", t.CACertificates)
		}
		cfg.RootCAs = pool
	}
	if t.ClientCertificate != "" {
		pair, err := tls.LoadX509KeyPair(t.ClientCertificate, t.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("clientCertificate/privateKey: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if sans := t.SubjectAltNames; len(sans) > 0 {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("egress: destination presented no certificate")
			}
			for _, want := range sans {
				if cs.PeerCertificates[0].VerifyHostname(want) == nil {
					return nil
				}
			}
			return fmt.Errorf("egress: destination certificate has none of the subjectAltNames %v", sans)
		}
	}
	return cfg, nil
}

// Destination is one host (or host pattern) of the outside world that
// workloads may be allowed to call.
type Destination struct {
	// Host is a canonical host name, or "*." and a canonical suffix: Istio's
	// wildcard, which matches any name ending in ".suffix" (one label or
	// more), never the suffix itself.
	Host  string
	Ports []Port
	// Ref names where it was declared ("namespace/name" of a ServiceEntry),
	// Pos the position, for audit records and errors.
	Ref string
	Pos config.Position
}

// Port returns the destination's port number, or false.
func (d *Destination) Port(n int) (*Port, bool) {
	for i := range d.Ports {
		if d.Ports[i].Number == n {
			return &d.Ports[i], true
		}
	}
	return nil, false
}

// Registry is the set of declared destinations; it is immutable once built
// and safe for concurrent use.
type Registry struct {
	exact map[string]*Destination
	// wild holds the wildcard destinations, longest suffix first, so that
	// the most specific one wins.
	wild []*Destination
}

// NewRegistry indexes dests. Two destinations for the same host pattern
// are an error: which one governs a call must never depend on file order.
func NewRegistry(dests []*Destination) (*Registry, error) {
	r := &Registry{exact: map[string]*Destination{}}
	seen := map[string]*Destination{}
	var errs config.Errors
	for _, d := range dests {
		if prev, dup := seen[d.Host]; dup {
			errs = append(errs, config.Error{File: d.Pos.File, Line: d.Pos.Line, Col: d.Pos.Col,
				Msg: fmt.Sprintf("host %q is already declared by %s (%s:%d)", d.Host, prev.Ref, prev.Pos.File, prev.Pos.Line)})
			continue
		}
		seen[d.Host] = d
		if strings.HasPrefix(d.Host, "*.") {
			r.wild = append(r.wild, d)
		} else {
			r.exact[d.Host] = d
		}
	}
	slices.SortStableFunc(r.wild, func(a, b *Destination) int { return len(b.Host) - len(a.Host) })
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return r, nil
}

// Lookup returns the destination declared for host (canonical: see
// request.CanonicalHost) and the port asked for: an exact host first, then
// the wildcard with the longest suffix. A host the registry doesn't know,
// or a port its destination doesn't declare, is not found.
func (r *Registry) Lookup(host string, port int) (*Destination, *Port, bool) {
	d := r.match(host)
	if d == nil {
		return nil, nil, false
	}
	p, ok := d.Port(port)
	if !ok {
		return d, nil, false
	}
	return d, p, true
}

func (r *Registry) match(host string) *Destination {
	if r == nil {
		return nil
	}
	if d, ok := r.exact[host]; ok {
		return d
	}
	for _, d := range r.wild {
		// "*.example.com" is ".example.com" as a suffix of a longer name.
		if suffix := d.Host[1:]; len(host) > len(suffix) && strings.HasSuffix(host, suffix) {
			return d
		}
	}
	return nil
}

// Len is the number of destinations.
func (r *Registry) Len() int {
	if r == nil {
		return 0
	}
	return len(r.exact) + len(r.wild)
}

// CanonicalPattern is canonicalPattern for callers outside the package (a
// credential's host names a destination as the registry keys it).
func CanonicalPattern(h string) (string, error) { return canonicalPattern(h) }

// canonicalPattern canonicalizes a destination host pattern with the one
// host canonicalizer requests go through, so that a pattern and the requests
// for it can't disagree on a spelling. IP literals are refused: the outside
// world is named, and addresses are the guard's business.
func canonicalPattern(h string) (string, error) {
	name, wild := strings.CutPrefix(h, "*.")
	a, err := request.ParseAuthority(name)
	switch {
	case err != nil || a.Port != 0 || strings.Contains(name, "*"):
		return "", fmt.Errorf("invalid host %q (want a DNS name such as api.example.com, or *.example.com)", h)
	case isIP(a.Host):
		return "", fmt.Errorf("host %q is an IP address: declare destinations by name", h)
	case !strings.Contains(a.Host, "."):
		return "", fmt.Errorf("host %q is a single label: declare a fully qualified name", h)
	}
	if wild {
		return "*." + a.Host, nil
	}
	return a.Host, nil
}

// isIP reports whether a canonical host is an IP literal.
func isIP(host string) bool {
	_, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil
}
