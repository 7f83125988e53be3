package config

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"tollgate.dev/tollgate/internal/request"
)

// NormalizationModes are Istio's names for the path normalization modes.
var NormalizationModes = []string{"NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"}

// EscapedSlashActions say what happens to %2F and %5C in a path (Envoy's names).
var EscapedSlashActions = []string{"REJECT_REQUEST", "UNESCAPE_AND_FORWARD", "KEEP_UNCHANGED"}

// PathParameterActions say what happens to ';' path parameters.
var PathParameterActions = []string{"KEEP", "STRIP", "REJECT", "REJECT_EXCEPT_LAST"}

// UnderscoreHeaderActions say what happens to header names with '_' (Envoy's
// names; ALLOW is not offered).
var UnderscoreHeaderActions = []string{"REJECT_REQUEST", "DROP_HEADER"}

// MisdirectedActions say what happens to a request whose Host and SNI pick
// different certificates.
var MisdirectedActions = []string{"REJECT", "ALLOW"}

type validator struct {
	d *Decoder
	g *Gateway
}

func (v *validator) errorf(path, format string, args ...any) {
	v.d.Errorf(path, format, args...)
}

func (v *validator) validate() {
	v.identity()
	v.ingress()
	v.egress(v.g.Egress)
	v.oidc()
	v.listenAddr("admin.listen", v.g.Admin.Listen)
	v.audit()
	v.namespace("policy.rootNamespace", v.g.Policy.RootNamespace)
	for i, f := range v.g.Policy.Files {
		if _, err := os.Stat(f); err != nil {
			v.errorf(fmt.Sprintf("policy.files[%d]", i), "cannot read %s: %v", f, unwrapPathError(err))
		}
	}
}

func (v *validator) identity() {
	id := v.g.Identity
	switch {
	case id.WorkloadAPI != nil && id.Files != nil:
		v.errorf("identity", "set exactly one of workloadAPI and files (got both)")
	case id.WorkloadAPI == nil && id.Files == nil:
		v.errorf("identity", "set exactly one of workloadAPI and files (got neither)")
	}
	if id.TrustDomain != "" {
		if _, err := spiffeid.TrustDomainFromString(id.TrustDomain); err != nil {
			v.errorf("identity.trustDomain", "invalid trust domain %q: %v", id.TrustDomain, err)
		}
	}
	for i, a := range id.TrustDomainAliases {
		if _, err := spiffeid.TrustDomainFromString(a); err != nil {
			v.errorf(fmt.Sprintf("identity.trustDomainAliases[%d]", i), "invalid trust domain %q: %v", a, err)
		}
	}
	if w := id.WorkloadAPI; w != nil {
		if w.Socket != "" && !strings.HasPrefix(w.Socket, "unix://") && !strings.HasPrefix(w.Socket, "tcp://") {
			v.errorf("identity.workloadAPI.socket", `want "unix:///path/to/agent.sock" (got %q)`, w.Socket)
		}
		if w.SPIFFEID != "" {
			if _, err := spiffeid.FromString(w.SPIFFEID); err != nil {
				v.errorf("identity.workloadAPI.spiffeID", "invalid SPIFFE ID %q: %v", w.SPIFFEID, err)
			}
		}
	}
	if f := id.Files; f != nil {
		v.readable("identity.files.cert", f.Cert)
		v.readable("identity.files.key", f.Key)
		v.readable("identity.files.bundle", f.Bundle)
		for td, p := range f.FederatedBundles {
			path := "identity.files.federatedBundles." + td
			if _, err := spiffeid.TrustDomainFromString(td); err != nil {
				v.errorf(path, "invalid trust domain %q: %v", td, err)
			}
			v.readable(path, p)
		}
	}
}

// readable reports a required file that is missing or unreadable.
func (v *validator) readable(path, file string) bool {
	if file == "" {
		v.errorf(path, "required")
		return false
	}
	f, err := os.Open(file)
	if err != nil {
		v.errorf(path, "cannot read %s: %v", file, unwrapPathError(err))
		return false
	}
	f.Close()
	return true
}

func (v *validator) listenAddr(path, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil {
		v.errorf(path, `want "host:port" or ":port" (got %q)`, addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errorf(path, "invalid port %q", port)
	}
}

func (v *validator) ingress() {
	in := v.g.Ingress
	if in == nil {
		if v.g.Egress == nil {
			v.errorf("", "nothing to serve: add an ingress section, an egress section, or both")
		}
		return
	}
	v.listenAddr("ingress.listen", in.Listen)
	v.namespace("ingress.namespace", in.Namespace)
	v.mesh(in.Mesh)
	if len(in.TLS.Certificates) == 0 {
		v.errorf("ingress.tls.certificates", "at least one certificate is required")
	}
	for i, c := range in.TLS.Certificates {
		p := fmt.Sprintf("ingress.tls.certificates[%d]", i)
		okCert := v.readable(p+".cert", c.Cert)
		okKey := v.readable(p+".key", c.Key)
		if okCert && okKey {
			if _, err := tls.LoadX509KeyPair(c.Cert, c.Key); err != nil {
				v.errorf(p, "invalid certificate/key pair: %v", err)
			}
		}
	}
	for i, c := range in.TrustedProxies {
		if _, err := parsePrefix(c); err != nil {
			v.errorf(fmt.Sprintf("ingress.trustedProxies[%d]", i), "want an IP or CIDR (got %q)", c)
		}
	}
	v.normalization("ingress.normalization", in.Normalization)
	v.underscores("ingress.headersWithUnderscores", in.HeadersWithUnderscores)
	if !contains(MisdirectedActions, in.MisdirectedRequests) {
		v.errorf("ingress.misdirectedRequests", "want one of %s (got %q)", strings.Join(MisdirectedActions, ", "), in.MisdirectedRequests)
	}
	v.limits("ingress.limits", in.Limits)
	if len(in.Routes) == 0 {
		v.errorf("ingress.routes", "at least one route is required")
	}
	seen := map[string]int{}
	names := map[string]int{}
	for i, r := range in.Routes {
		v.route(i, r, seen, names)
	}
}

func (v *validator) route(i int, r Route, seen, names map[string]int) {
	p := fmt.Sprintf("ingress.routes[%d]", i)
	if r.Name == "" {
		v.errorf(p+".name", "required")
	} else if j, dup := names[r.Name]; dup {
		v.errorf(p+".name", "duplicate route name %q (also ingress.routes[%d])", r.Name, j)
	} else {
		names[r.Name] = i
	}
	host := r.Host
	if r.Host == "" {
		v.errorf(p+".host", `required (use "*" for any host)`)
	} else if canon, err := checkRouteHost(r.Host); err != nil {
		v.errorf(p+".host", "%v", err)
	} else {
		host = canon
	}
	if !strings.HasPrefix(r.PathPrefix, "/") {
		v.errorf(p+".pathPrefix", "must start with / (got %q)", r.PathPrefix)
	}
	// Two spellings of one host are one route key.
	key := host + " " + strings.TrimSuffix(r.PathPrefix, "/")
	if j, dup := seen[key]; dup {
		v.errorf(p, "duplicate route: host %q and pathPrefix %q are already routed by ingress.routes[%d]", r.Host, r.PathPrefix, j)
	} else {
		seen[key] = i
	}
	u, err := url.Parse(r.Upstream.URL)
	switch {
	case r.Upstream.URL == "":
		v.errorf(p+".upstream.url", "required")
	case err != nil:
		v.errorf(p+".upstream.url", "invalid URL %q", r.Upstream.URL)
	case u.Scheme != "https":
		v.errorf(p+".upstream.url", "must be https:// (upstreams are reached over mesh mTLS; got %q)", r.Upstream.URL)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		v.errorf(p+".upstream.url", "want https://host[:port][/base-path] (got %q)", r.Upstream.URL)
	case !plainBasePath(u.EscapedPath()):
		v.errorf(p+".upstream.url", "the base path must be plain segments of letters, digits and -._~ (no dot segments, empty segments, escapes or ';'; got %q)", u.EscapedPath())
	}
	v.routeLogin(p, r)
	if len(r.Upstream.SPIFFEIDs) == 0 {
		v.errorf(p+".upstream.spiffeIDs", "required: the SPIFFE ID(s) the upstream must present")
	}
	for j, id := range r.Upstream.SPIFFEIDs {
		if err := CheckSPIFFEPattern(id); err != nil {
			v.errorf(fmt.Sprintf("%s.upstream.spiffeIDs[%d]", p, j), "%v", err)
		}
	}
}

// CheckSPIFFEPattern validates one SPIFFE ID pattern: an exact ID, "spiffe://td"
// (any ID in the trust domain) or "spiffe://td/path/*" (IDs under a path).
func CheckSPIFFEPattern(s string) error {
	base, _ := strings.CutSuffix(s, "/*")
	if _, err := spiffeid.FromString(base); err != nil {
		return fmt.Errorf("invalid SPIFFE ID pattern %q: %v (want spiffe://td, spiffe://td/path or spiffe://td/path/*)", s, err)
	}
	return nil
}

// checkRouteHost validates a route's host pattern with the one host
// canonicalizer requests go through (request.ParseAuthority), so that no
// pattern passes here that the router would read differently, and returns
// the canonical pattern: "Admin.Example.COM.:443" is "admin.example.com:443".
func checkRouteHost(h string) (string, error) {
	if h == "*" {
		return h, nil
	}
	name, wild := strings.CutPrefix(h, "*.")
	a, err := request.ParseAuthority(name)
	if err != nil || strings.Contains(name, "*") {
		return "", fmt.Errorf(`invalid host %q (want "example.com", "example.com:8443", "*.example.com" or "*")`, h)
	}
	if wild {
		return "*." + a.String(), nil
	}
	return a.String(), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePrefixes parses IPs and CIDRs (validated at load).
func ParsePrefixes(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func dirOf(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "."
	}
	return p[:i]
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir() || errors.Is(err, fs.ErrPermission)
}

// plainBasePath reports whether p can prefix every forwarded path without
// changing what the upstream makes of it: "" or "/", or "/seg/seg[/]" of
// unreserved characters, no "." or ".." segment (the upstream would resolve
// "/base/../x" above the base), no empty segment (some merge "//"), no '%'
// or ';' (decoded or stripped differently by different servers).
func plainBasePath(p string) bool {
	if p == "" || p == "/" {
		return true
	}
	if p[0] != '/' {
		return false
	}
	for _, seg := range strings.Split(strings.TrimSuffix(p[1:], "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
				return false
			}
		}
	}
	return true
}

// limits validates a listener's limits, under path.
func (v *validator) limits(path string, l Limits) {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"maxHeaderBytes", l.MaxHeaderBytes}, {"maxHeaderCount", l.MaxHeaderCount},
		{"maxConnections", l.MaxConnections}, {"maxConnectionsPerSource", l.MaxConnectionsPerSource},
	} {
		if f.v < 0 {
			v.errorf(path+"."+f.name, "must not be negative (got %d)", f.v)
		}
	}
	// A share of no limit would be silently ignored, and one above the limit
	// could never apply: either is a setting that does not do what it says.
	switch n, limit := l.MaxConnectionsPerSource, l.MaxConnections; {
	case n > 0 && limit == 0:
		v.errorf(path+".maxConnectionsPerSource", "is a share of maxConnections, which is not set (got %d, want maxConnections set too)", n)
	case n > 0 && n > limit:
		v.errorf(path+".maxConnectionsPerSource", "must not exceed maxConnections (got %d, want at most %d)", n, limit)
	}
}

// normalization validates a front's path normalization settings, under path.
func (v *validator) normalization(path string, n Normalization) {
	if !contains(NormalizationModes, n.Mode) {
		v.errorf(path+".mode", "want one of %s (got %q)", strings.Join(NormalizationModes, ", "), n.Mode)
	}
	if !contains(EscapedSlashActions, n.EscapedSlashes) {
		v.errorf(path+".escapedSlashes", "want one of %s (got %q)", strings.Join(EscapedSlashActions, ", "), n.EscapedSlashes)
	}
	if !contains(PathParameterActions, n.PathParameters) {
		v.errorf(path+".pathParameters", "want one of %s (got %q)", strings.Join(PathParameterActions, ", "), n.PathParameters)
	}
}

// underscores validates a front's headersWithUnderscores, at path.
func (v *validator) underscores(path, action string) {
	if !contains(UnderscoreHeaderActions, action) {
		v.errorf(path, "want one of %s (got %q)", strings.Join(UnderscoreHeaderActions, ", "), action)
	}
}

func (v *validator) audit() {
	a := v.g.Audit
	names := map[string]int{}
	for i, s := range a.Sinks {
		p := fmt.Sprintf("audit.sinks[%d]", i)
		n := 0
		for _, set := range []bool{s.Stdout, s.File != "", s.Syslog != nil, s.Webhook != nil, s.HEC != nil, s.OTLP != nil} {
			if set {
				n++
			}
		}
		switch {
		case n > 1:
			v.errorf(p, "set exactly one of stdout, file, syslog, webhook, hec and otlp (got %d)", n)
		case n == 0:
			v.errorf(p, "set exactly one of stdout, file, syslog, webhook, hec and otlp (got none)")
		case s.File != "":
			if dir := dirOf(s.File); !isDir(dir) {
				v.errorf(p+".file", "directory %s does not exist", dir)
			}
		case s.Syslog != nil:
			v.syslogSink(p+".syslog", *s.Syslog, a.Journal != nil)
		case s.Webhook != nil:
			v.httpSink(p+".webhook", s.Webhook.URL, s.Webhook.CAFile, s.Webhook.TokenFile, false, a.Journal != nil)
		case s.HEC != nil:
			v.httpSink(p+".hec", s.HEC.URL, s.HEC.CAFile, s.HEC.TokenFile, true, a.Journal != nil)
		case s.OTLP != nil:
			v.httpSink(p+".otlp", s.OTLP.URL, s.OTLP.CAFile, s.OTLP.TokenFile, false, a.Journal != nil)
		}
		switch s.Format {
		case "", "native", "ocsf", "ecs", "cef":
		default:
			v.errorf(p+".format", "%q: want native, ocsf, ecs or cef", s.Format)
		}
		name := s.SinkName()
		if s.Name != "" && (strings.ContainsAny(s.Name, `/\`) || s.Name == "." || s.Name == ".." || strings.HasSuffix(s.Name, ".tmp")) {
			v.errorf(p+".name", "%q: a sink name is a plain file name (no / or \\, not . or .., not ending in .tmp)", s.Name)
		}
		if j, dup := names[name]; dup {
			v.errorf(p+".name", "sink name %q is also audit.sinks[%d]'s: each sink needs its own (it keys the sink's journal cursor)", name, j)
		}
		names[name] = i
	}
	if ps := a.Pseudonymize; ps != nil {
		if v.readable("audit.pseudonymize.keyFile", ps.KeyFile) {
			if b, err := os.ReadFile(ps.KeyFile); err == nil && len(b) < 32 {
				v.errorf("audit.pseudonymize.keyFile", "%s holds %d bytes: want at least 32 (head -c 32 /dev/urandom)", ps.KeyFile, len(b))
			}
		}
		if len(ps.Fields) == 0 {
			v.errorf("audit.pseudonymize.fields", "name the fields to hash: %s", strings.Join(PseudonymFields, ", "))
		}
		for i, f := range ps.Fields {
			if !slices.Contains(PseudonymFields, f) {
				v.errorf(fmt.Sprintf("audit.pseudonymize.fields[%d]", i), "%q: want one of %s", f, strings.Join(PseudonymFields, ", "))
			}
		}
	}
	switch a.FailureMode {
	case AuditFailOpen:
	case AuditFailClosed:
		if a.Journal == nil {
			v.errorf("audit.failureMode", "closed needs audit.journal: a decision is durable only in the journal")
		}
	default:
		v.errorf("audit.failureMode", "%q: want open or closed", a.FailureMode)
	}
	j := a.Journal
	if j == nil {
		return
	}
	switch {
	case j.Dir == "":
		v.errorf("audit.journal.dir", "required: the directory of the journal")
	case !isDir(dirOf(strings.TrimSuffix(j.Dir, "/"))):
		v.errorf("audit.journal.dir", "parent directory %s does not exist", dirOf(strings.TrimSuffix(j.Dir, "/")))
	}
	if j.SegmentBytes < 4<<10 {
		v.errorf("audit.journal.segmentBytes", "%d: want at least 4096", j.SegmentBytes)
	}
	if j.SegmentAge < time.Second {
		v.errorf("audit.journal.segmentAge", "%v: want at least 1s", j.SegmentAge)
	}
	if j.MaxBytes < 2*j.SegmentBytes {
		v.errorf("audit.journal.maxBytes", "%d: want at least twice segmentBytes (%d)", j.MaxBytes, j.SegmentBytes)
	}
	if j.SyncInterval < 0 || j.SyncInterval > time.Second {
		v.errorf("audit.journal.syncInterval", "%v: want between 0s and 1s", j.SyncInterval)
	}
	if d := j.DecisionDelay; d != nil && (*d < 0 || *d > 100*time.Millisecond) {
		v.errorf("audit.journal.decisionDelay", "%v: want between 0s (never wait) and 100ms", *d)
	}
	if j.DecisionSiblings < 0 {
		v.errorf("audit.journal.decisionSiblings", "%d: want at least 1 (unset or 0: 16)", j.DecisionSiblings)
	}
	if j.SigningKey != "" && v.readable("audit.journal.signingKey", j.SigningKey) {
		if err := checkEd25519Key(j.SigningKey); err != nil {
			v.errorf("audit.journal.signingKey", "%v", err)
		}
	}
	if j.CheckpointEvery < 1 {
		v.errorf("audit.journal.checkpointEvery", "%d: want at least 1", j.CheckpointEvery)
	}
	if j.CheckpointInterval < time.Second {
		v.errorf("audit.journal.checkpointInterval", "%v: want at least 1s", j.CheckpointInterval)
	}
	if j.OnFull != "dropOldest" && j.OnFull != "block" {
		v.errorf("audit.journal.onFull", "%q: want dropOldest or block", j.OnFull)
	}
}

func (v *validator) httpSink(p, rawURL, caFile, tokenFile string, tokenRequired, journal bool) {
	if !journal {
		v.errorf(p, "a network sink needs audit.journal: records wait there while the receiver is down")
	}
	if u, err := url.Parse(rawURL); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		v.errorf(p+".url", "%q: want https://host[:port]/path (no user info)", redactQuery(rawURL))
	}
	if caFile != "" {
		v.readable(p+".caFile", caFile)
	}
	if tokenFile != "" || tokenRequired {
		v.readable(p+".tokenFile", tokenFile)
	}
}

// redactQuery drops a URL's query from an error: it may carry a secret.
func redactQuery(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

func (v *validator) syslogSink(p string, s AuditSyslog, journal bool) {
	if !journal {
		v.errorf(p, "a network sink needs audit.journal: records wait there while the receiver is down")
	}
	if host, port, err := net.SplitHostPort(s.Address); err != nil || host == "" || port == "" {
		v.errorf(p+".address", "%q: want host:port", s.Address)
	}
	if s.CAFile != "" {
		v.readable(p+".caFile", s.CAFile)
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		v.errorf(p, "set both certFile and keyFile, or neither")
	} else if s.CertFile != "" {
		v.readable(p+".certFile", s.CertFile)
		v.readable(p+".keyFile", s.KeyFile)
	}
}

// checkEd25519Key checks that file holds an Ed25519 private key in PKCS #8
// PEM, as `openssl genpkey -algorithm ed25519` writes it.
func checkEd25519Key(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return fmt.Errorf("%s: no PEM block (want an Ed25519 private key: openssl genpkey -algorithm ed25519)", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	if _, ok := k.(ed25519.PrivateKey); !ok {
		return fmt.Errorf("%s: a %T key, want Ed25519", file, k)
	}
	return nil
}
