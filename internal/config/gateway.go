package config

import (
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// APIVersion and KindGateway identify a gateway configuration document.
const (
	APIVersion  = "tollgate.dev/v1"
	KindGateway = "Gateway"
)

// Gateway is the whole gateway configuration: one document of kind Gateway.
// Defaults are applied by Load (see defaults.go, the one place they are set).
type Gateway struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Identity   Identity `yaml:"identity"`
	Ingress    *Ingress `yaml:"ingress"`
	// Egress, when set, adds the egress listener (see egress.go).
	Egress *Egress `yaml:"egress"`
	Admin  Admin   `yaml:"admin"`
	Audit  Audit   `yaml:"audit"`
	Policy Policy  `yaml:"policy"`
	// OIDC configures browser login (see oidc.go).
	OIDC *OIDC `yaml:"oidc"`
	// ShutdownDelay is how long the gateway keeps serving after SIGTERM/SIGINT
	// with readiness already false, so that load balancers stop sending before
	// the listeners close. 0s: no delay.
	ShutdownDelay time.Duration `yaml:"shutdownDelay"`
	// ShutdownTimeout bounds how long in-flight requests may finish after the
	// listeners stopped accepting.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`

	// File is the file the configuration was read from (not a YAML field).
	File string `yaml:"-"`
	// pos remembers where each field was written, for errors found after loading.
	pos *Decoder
}

// Identity says where the gateway's SPIFFE SVID and trust bundles come from:
// exactly one of WorkloadAPI and Files.
type Identity struct {
	// TrustDomain is the gateway's own trust domain; policies' principals are
	// relative to it. Derived from the SVID when empty.
	TrustDomain        string         `yaml:"trustDomain"`
	TrustDomainAliases []string       `yaml:"trustDomainAliases"`
	WorkloadAPI        *WorkloadAPI   `yaml:"workloadAPI"`
	Files              *IdentityFiles `yaml:"files"`
}

// WorkloadAPI takes the SVID from a SPIFFE Workload API (a SPIRE agent).
type WorkloadAPI struct {
	// Socket is "unix:///path/agent.sock"; empty means $SPIFFE_ENDPOINT_SOCKET.
	Socket string `yaml:"socket"`
	// SPIFFEID picks one SVID when the workload is issued several.
	SPIFFEID string `yaml:"spiffeID"`
	// WaitTimeout bounds the wait for the first SVID at start.
	WaitTimeout time.Duration `yaml:"waitTimeout"`
}

// IdentityFiles reads the SVID and bundles from PEM files, reloaded when they change.
type IdentityFiles struct {
	Cert   string `yaml:"cert"`
	Key    string `yaml:"key"`
	Bundle string `yaml:"bundle"`
	// FederatedBundles maps a foreign trust domain to its bundle PEM file.
	FederatedBundles map[string]string `yaml:"federatedBundles"`
}

// Ingress is the front door for external clients.
type Ingress struct {
	Listen string `yaml:"listen"`
	// Labels are matched by policies' spec.selector.matchLabels.
	Labels map[string]string `yaml:"labels"`
	// Namespace, when set, is the listener's Istio namespace: only documents in
	// it and in policy.rootNamespace apply. Empty: documents of every namespace.
	Namespace string    `yaml:"namespace"`
	TLS       ServerTLS `yaml:"tls"`
	// TrustedProxies are the peers (CIDRs) whose X-Forwarded-*, Forwarded and
	// X-Request-Id headers are kept; from anyone else they are removed.
	TrustedProxies []string      `yaml:"trustedProxies"`
	Timeouts       Timeouts      `yaml:"timeouts"`
	Limits         Limits        `yaml:"limits"`
	Normalization  Normalization `yaml:"normalization"`
	// HeadersWithUnderscores: REJECT_REQUEST (400, the default) or DROP_HEADER.
	// CGI-style backends read "X_User" as X-User, past every dash-spelled rule.
	HeadersWithUnderscores string `yaml:"headersWithUnderscores"`
	// MisdirectedRequests: REJECT (421, the default) a request whose Host would
	// be served another certificate than its TLS SNI chose (domain fronting),
	// or ALLOW it. Requests without SNI are never misdirected.
	MisdirectedRequests string  `yaml:"misdirectedRequests"`
	Routes              []Route `yaml:"routes"`
	// Mesh, when set, adds a listener for in-mesh (east-west) callers: it requires
	// a client SVID, and the caller's SPIFFE ID becomes source.principal for policy.
	Mesh *MeshListener `yaml:"mesh"`
}

// ServerTLS lists the certificates served; the one whose names match the SNI is
// chosen, the first is the default.
type ServerTLS struct {
	Certificates []CertFile `yaml:"certificates"`
}

// CertFile is a PEM certificate chain and its key, reloaded when the files change.
type CertFile struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Timeouts of the ingress listener and its upstreams.
type Timeouts struct {
	ReadHeader time.Duration `yaml:"readHeader"`
	Read       time.Duration `yaml:"read"`
	Write      time.Duration `yaml:"write"`
	Idle       time.Duration `yaml:"idle"`
	// Upstream bounds the wait for an upstream's response headers.
	Upstream time.Duration `yaml:"upstream"`
	// Dial bounds connecting (TCP + TLS) to an upstream.
	Dial time.Duration `yaml:"dial"`
}

// Limits on what a client may send.
type Limits struct {
	MaxHeaderBytes int `yaml:"maxHeaderBytes"`
	MaxHeaderCount int `yaml:"maxHeaderCount"`
	// MaxConnections bounds each listener's open connections. At the limit
	// a new connection sheds an idle keep-alive one (the least recently used
	// of the source holding the most); if its source holds its share
	// (MaxConnectionsPerSource) it may only replace an idle one of its own,
	// or is closed at accept; with nothing idle it waits until one closes.
	// Zero: no limit.
	MaxConnections int `yaml:"maxConnections"`
	// MaxConnectionsPerSource is how many connections one source (an IPv4
	// address or an IPv6 /64, as the TCP peer) may hold while the listener
	// is at MaxConnections. Zero: a fair share, MaxConnections divided
	// among the sources holding connections.
	MaxConnectionsPerSource int `yaml:"maxConnectionsPerSource"`
}

// Normalization selects the path normalizer's mode (Istio's names), what to do
// with escaped slashes (%2F, %5C), and what to do with ';' path parameters.
type Normalization struct {
	Mode           string `yaml:"mode"`
	EscapedSlashes string `yaml:"escapedSlashes"`
	PathParameters string `yaml:"pathParameters"`
}

// Route sends matching requests to one upstream.
type Route struct {
	Name string `yaml:"name"`
	// Host matches the request's host case-insensitively; "host:port" also requires
	// the port; "*.example.com" matches one label; "*" matches any host.
	Host string `yaml:"host"`
	// PathPrefix matches whole path segments: "/api" matches "/api" and "/api/x", not "/apix".
	PathPrefix string   `yaml:"pathPrefix"`
	Upstream   Upstream `yaml:"upstream"`
	// Login names an oidc.providers entry: browsers without a session are sent to
	// log in there; other requests without a session or bearer token get 401.
	Login string `yaml:"login"`
}

// Upstream is an internal service reached over mesh mTLS.
type Upstream struct {
	URL string `yaml:"url"`
	// SPIFFEIDs the upstream may present: exact IDs, "spiffe://td" for any ID in a
	// trust domain, or "spiffe://td/path/*" for IDs under a path.
	SPIFFEIDs []string `yaml:"spiffeIDs"`
	// ServerName is the SNI sent to the upstream; the URL's host by default.
	ServerName string `yaml:"serverName"`
	// Timeout overrides ingress.timeouts.upstream for this route.
	Timeout time.Duration `yaml:"timeout"`
}

// Admin is the listener for health, readiness and metrics.
type Admin struct {
	Listen string `yaml:"listen"`
}

// Audit says where audit events go.
type Audit struct {
	Sinks []AuditSink `yaml:"sinks"`
	// Journal, if set, makes delivery durable: events are appended to a
	// local journal (fsynced) and every sink is fed from it, at least once.
	Journal *AuditJournal `yaml:"journal"`
	// Instance names this gateway in every record (default: the host
	// name); journal sequence numbers are per instance.
	Instance string `yaml:"instance"`
	// Pseudonymize replaces identifiers with keyed hashes (HMAC-SHA256)
	// before a record is journaled or sent.
	Pseudonymize *AuditPseudonymize `yaml:"pseudonymize"`
	// FailureMode: "open" (the default) keeps serving when audit can't
	// record; "closed" (needs a journal) forwards a request only once its
	// decision record is durably journaled, and answers 503 otherwise.
	FailureMode string `yaml:"failureMode"`
}

// AuditPseudonymize names the key and the fields to hash.
type AuditPseudonymize struct {
	// KeyFile holds the HMAC key: at least 32 bytes, used as they are.
	KeyFile string `yaml:"keyFile"`
	// Fields: any of PseudonymFields.
	Fields []string `yaml:"fields"`
}

// PseudonymFields are the audit fields that can be pseudonymized (they
// match audit.PseudonymFields; a test in internal/gateway checks it).
var PseudonymFields = []string{"client.address", "auth.principal", "auth.subject", "sourcePrincipal"}

// AuditJournal configures the durable audit journal.
type AuditJournal struct {
	// Dir holds the segments (audit.ndjson, audit-<seq>.ndjson) and the
	// sinks' cursors; created 0700.
	Dir string `yaml:"dir"`
	// SegmentBytes and SegmentAge rotate the active segment.
	SegmentBytes int64         `yaml:"segmentBytes"`
	SegmentAge   time.Duration `yaml:"segmentAge"`
	// MaxBytes is the quota of all segments together.
	MaxBytes int64 `yaml:"maxBytes"`
	// OnFull: "dropOldest" (the default) or "block".
	OnFull string `yaml:"onFull"`
	// SyncInterval is the group commit window (default 10ms): records are
	// gathered this long after a commit before the next write and fsync.
	// A fail-closed decision ends the window at once.
	SyncInterval time.Duration `yaml:"syncInterval"`
	// DecisionDelay (default 1ms; 0s: never) is how long a fail-closed
	// decision waits for others to share its fsync, when more than
	// DecisionSiblings (0: the default, 16) requests decided in the last
	// 50–100 ms are in flight.
	DecisionDelay    *time.Duration `yaml:"decisionDelay"`
	DecisionSiblings int            `yaml:"decisionSiblings"`
	// SigningKey is an Ed25519 private key (PKCS #8 PEM). With it the
	// journal signs a checkpoint every CheckpointEvery records (10,000) or
	// CheckpointInterval (1m), and at shutdown; `gateway audit verify --key`
	// checks them.
	SigningKey         string        `yaml:"signingKey"`
	CheckpointEvery    int           `yaml:"checkpointEvery"`
	CheckpointInterval time.Duration `yaml:"checkpointInterval"`
}

// Audit failure modes.
const (
	AuditFailOpen   = "open"
	AuditFailClosed = "closed"
)

// AuditSink is exactly one of stdout, file and syslog, with an optional name.
type AuditSink struct {
	// Name keys the sink's journal cursor; it defaults to "stdout",
	// "file-<base name>" or "syslog-<host>_<port>". Renaming a sink makes
	// it start from now.
	Name string `yaml:"name"`
	// Format is "native" (the default: the journal's own records, fields in
	// docs/audit.md), "ocsf" (OCSF 1.8.0 HTTP Activity), "ecs" (Elastic
	// Common Schema 9.4) or "cef" (ArcSight CEF:0).
	Format  string        `yaml:"format"`
	Stdout  bool          `yaml:"stdout"`
	File    string        `yaml:"file"`
	Syslog  *AuditSyslog  `yaml:"syslog"`
	Webhook *AuditWebhook `yaml:"webhook"`
	HEC     *AuditHEC     `yaml:"hec"`
	OTLP    *AuditWebhook `yaml:"otlp"`
}

// AuditWebhook POSTs batches of NDJSON records to an HTTPS endpoint (for
// otlp: exports them as OpenTelemetry logs over OTLP/HTTP to the url, the
// collector's /v1/logs). It needs audit.journal.
type AuditWebhook struct {
	URL string `yaml:"url"`
	// CAFile verifies the endpoint; default: the system roots.
	CAFile string `yaml:"caFile"`
	// TokenFile holds a bearer token sent as "Authorization: Bearer ...".
	TokenFile string `yaml:"tokenFile"`
}

// AuditHEC sends batches to Splunk's HTTP Event Collector. It needs
// audit.journal.
type AuditHEC struct {
	// URL is the collector's base, https://splunk.example.com:8088.
	URL    string `yaml:"url"`
	CAFile string `yaml:"caFile"`
	// TokenFile holds the HEC token (required).
	TokenFile string `yaml:"tokenFile"`
	// Index, Source and Sourcetype (default "tollgate:audit") of the events.
	Index      string `yaml:"index"`
	Source     string `yaml:"source"`
	Sourcetype string `yaml:"sourcetype"`
	// Ack waits for indexer acknowledgement before a batch counts as
	// delivered (the token must have it enabled).
	Ack bool `yaml:"ack"`
}

// AuditSyslog is a syslog receiver reached over TLS (RFC 5424 messages,
// RFC 5425 octet-counting framing). It needs audit.journal: records wait
// there while the receiver is down.
type AuditSyslog struct {
	// Address is host:port (6514 is syslog over TLS).
	Address string `yaml:"address"`
	// CAFile verifies the receiver's certificate; empty: the system roots.
	CAFile string `yaml:"caFile"`
	// ServerName is the name checked in its certificate; default: the
	// address's host.
	ServerName string `yaml:"serverName"`
	// CertFile and KeyFile, together, are a client certificate for
	// receivers that require one.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// Hostname is the messages' HOSTNAME field; default: the machine's.
	Hostname string `yaml:"hostname"`
}

// SinkName is the sink's name, given or derived.
func (s AuditSink) SinkName() string {
	switch {
	case s.Name != "":
		return s.Name
	case s.Stdout:
		return "stdout"
	case s.Syslog != nil:
		return "syslog-" + plainName(s.Syslog.Address)
	case s.Webhook != nil:
		return "webhook-" + plainName(urlHost(s.Webhook.URL))
	case s.HEC != nil:
		return "hec-" + plainName(urlHost(s.HEC.URL))
	case s.OTLP != nil:
		return "otlp-" + plainName(urlHost(s.OTLP.URL))
	}
	return "file-" + filepath.Base(s.File)
}

// Policy names the AuthorizationPolicy and RequestAuthentication documents.
type Policy struct {
	// Files are files or directories of policy documents, watched and reloaded.
	Files []string `yaml:"files"`
	// RootNamespace: a document here applies to listeners of every namespace
	// (see Ingress.Namespace); its selector still has to match.
	RootNamespace string `yaml:"rootNamespace"`
	// PollInterval is how often the files are checked for changes.
	PollInterval time.Duration `yaml:"pollInterval"`
	// AllowEmpty lets a reload put in force a set that leaves a listener
	// with no policies, or with no ALLOW or no DENY policies where the set
	// in force had some. Off, such a reload (an emptied or deleted file, a
	// directory caught mid-deploy) is refused and the old set keeps serving.
	AllowEmpty bool `yaml:"allowEmpty"`
}

func plainName(s string) string {
	return strings.NewReplacer(":", "_", "/", "_", "[", "", "]", "", "\\", "_").Replace(s)
}

func urlHost(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return u
}
