package audit

import (
	"encoding/json"
	"math"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// Kind tells which front of the gateway served the request.
type Kind string

const (
	// Ingress is a request from an external client to a mesh service.
	Ingress Kind = "ingress"
	// Mesh is a request from a workload inside the mesh, over mTLS, to a
	// mesh service through the gateway's mesh listener.
	Mesh Kind = "mesh"
	// Egress is a call from a mesh workload to an external destination.
	Egress Kind = "egress"
)

// ErrorKind classifies why a request did not get a normal upstream response. It is a
// small closed vocabulary so that SIEM rules and metric labels stay bounded; never put
// an error's text here (it may carry addresses or secrets).
type ErrorKind string

const (
	// ErrNoRoute: no route matched the host and path (ingress) or no destination
	// matched (egress).
	ErrNoRoute ErrorKind = "no_route"
	// ErrBadRequest: the request was rejected before routing, for example a path
	// that could not be normalized safely.
	ErrBadRequest ErrorKind = "bad_request"
	// ErrUnauthenticated: a credential was presented and failed verification.
	ErrUnauthenticated ErrorKind = "unauthenticated"
	// ErrDestinationDenied: egress refused to dial the resolved address (denied
	// range or DNS answer outside what policy allowed).
	ErrDestinationDenied ErrorKind = "destination_denied"
	// ErrUpstreamUnreachable: dialing the upstream failed (refused, no route, DNS).
	ErrUpstreamUnreachable ErrorKind = "upstream_unreachable"
	// ErrUpstreamTLS: the TLS handshake with the upstream failed, including an
	// upstream whose SPIFFE ID was not the expected one.
	ErrUpstreamTLS ErrorKind = "upstream_tls"
	// ErrUpstreamProtocol: the upstream answered with something that is not valid
	// HTTP, or reset the stream.
	ErrUpstreamProtocol ErrorKind = "upstream_protocol"
	// ErrTimeout: a deadline passed (dial, handshake, response headers, body).
	ErrTimeout ErrorKind = "timeout"
	// ErrClientCanceled: the client went away before the response was complete.
	ErrClientCanceled ErrorKind = "client_canceled"
	// ErrTLSHandshake: the client's TLS handshake failed; no request was
	// read. TLSError says why.
	ErrTLSHandshake ErrorKind = "tls_handshake"
	// ErrInternal: a gateway fault; the operational log has the details.
	ErrInternal ErrorKind = "internal"
)

// Event is the audit record of one request, ingress or egress, allowed or denied. It is
// flat on purpose: a SIEM can index it as is, and the formatters of the SIEM pipeline
// (OCSF, ECS, CEF, LEEF) project it without information the gateway did not capture.
//
// doc.go documents every field. The JSON form is produced by [Event.MarshalJSON].
//
// An Event must never hold a secret: no header or cookie values, no tokens, and a
// query string only after [RedactQuery]. The Logger redacts Query again before any
// sink sees it, as a second line of defence.
type Event struct {
	// Time is when the request started. Encoded in UTC with millisecond precision.
	Time time.Time `json:"-"`
	// ID is the unique id of this event (UUIDv7); the Logger fills it when empty.
	ID string `json:"id,omitempty"`
	// Sequence is a per-Logger monotonic number assigned at write time; a gap means
	// an event was dropped.
	Sequence uint64 `json:"seq,omitempty"`
	// RequestID correlates this event with operational logs and the client's error page.
	RequestID string `json:"requestId,omitempty"`
	// TraceID is the W3C trace id when the request carried or started a trace.
	TraceID string `json:"traceId,omitempty"`
	// Instance names the gateway that wrote the record (Config.Instance,
	// default the host name); seq is per instance.
	Instance string `json:"instance,omitempty"`
	Kind     Kind   `json:"kind"`

	Client Endpoint `json:"client,omitzero"`
	// Listener is the local address the request arrived on.
	Listener   Endpoint `json:"listener,omitzero"`
	SNI        string   `json:"sni,omitempty"`
	TLSVersion string   `json:"tlsVersion,omitempty"`
	TLSCipher  string   `json:"tlsCipher,omitempty"`

	Host     string `json:"host,omitempty"`
	Method   string `json:"method,omitempty"`
	Path     string `json:"path,omitempty"`
	Query    string `json:"query,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Status   int    `json:"status"`
	BytesIn  int64  `json:"bytesIn"`
	BytesOut int64  `json:"bytesOut"`
	// Duration is encoded as durationMs, a float with microsecond resolution.
	Duration  time.Duration `json:"-"`
	UserAgent string        `json:"userAgent,omitempty"`

	Route    string   `json:"route,omitempty"`
	Upstream Upstream `json:"upstream,omitzero"`

	SourcePrincipal string `json:"sourcePrincipal,omitempty"`
	Auth            *Auth  `json:"auth,omitempty"`
	// Decision is the policy engine's record, as the engine made it.
	Decision *request.Decision `json:"decision,omitempty"`

	Error ErrorKind `json:"error,omitempty"`
	// TLSError says why a TLS handshake failed (Error "tls_handshake"):
	// timeout, no_client_certificate, bad_client_certificate,
	// rejected_by_client, unsupported_parameters, not_tls,
	// connection_closed or handshake_failed.
	TLSError string `json:"tlsError,omitempty"`
	// Truncated is set by the Logger when it shortened an over-long field so that a
	// line stays within what log shippers accept.
	Truncated bool `json:"truncated,omitempty"`

	// Phase is "decision" for the record a fail-closed gateway journals
	// before it forwards a request; the request's completed record follows
	// with the same requestId and no phase.
	Phase string `json:"phase,omitempty"`
	// Gap, on a record of kind "audit", says that records were lost.
	Gap *Gap `json:"gap,omitempty"`
	// Checkpoint, on a record of kind "audit", is a signature over the
	// journal up to the record before it.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Prev is the SHA-256 (hex) of the journal line before this one: the
	// hash chain Verify checks. Set by the journal.
	Prev string `json:"prev,omitempty"`

	// release takes the event back once the Logger is done with it (Lend).
	release Releaser
	// decided is the window in which the Logger counted the request as
	// decided, fail-closed, and in flight until it completes (0: not).
	decided int64
}

// A Releaser takes back an event it lent (Event.Lend). A front that keeps
// each request's state, the event within it, in a pool lends the event to
// the Logger, which hands it back as soon as it has encoded it (or
// dropped it): the next request reuses the memory instead of leaving
// garbage to collect.
type Releaser interface{ ReleaseEvent() }

// Lend makes r the owner e goes back to when Release is called: whoever e
// is handed to (the Logger) calls Release once, on e itself, when done.
func (e *Event) Lend(r Releaser) { e.release = r }

// Lent reports whether e has an owner to go back to (Lend).
func (e *Event) Lent() bool { return e.release != nil }

// Release hands e back to its owner, if it was lent (Lend); neither e nor
// anything it points to may be used afterwards. Without an owner it does
// nothing: the garbage collector takes e.
func (e *Event) Release() {
	if r := e.release; r != nil {
		e.release = nil
		r.ReleaseEvent()
	}
}

// Audit is the kind of the trail's own records (gaps).
const Audit Kind = "audit"

// PhaseDecision marks the pre-forward record of fail-closed mode.
const PhaseDecision = "decision"

// Checkpoint signs the hash chain: the Ed25519 signature of the hash of
// the journal line with sequence number Seq (the line just before the
// checkpoint). As every line carries the hash of the one before it, the
// signature vouches for every line up to Seq; see CheckpointMessage.
type Checkpoint struct {
	Seq uint64 `json:"seq"`
	// Hash is the SHA-256 (hex) of line Seq.
	Hash string `json:"hash"`
	// KeyID names the signing key: the first 16 hex digits of the SHA-256
	// of its public key.
	KeyID string `json:"keyId"`
	// Sig is the Ed25519 signature (base64) of CheckpointMessage.
	Sig string `json:"sig"`
}

// Gap records lost events: dropped before they reached the journal (the
// queue stayed full, the journal could not append), or removed from it
// before a sink delivered them.
type Gap struct {
	// Dropped is how many records were lost.
	Dropped uint64 `json:"dropped"`
	// Reason: "queue_full", "journal_unavailable", "journal_full",
	// "quota" (removed from the journal before Sink delivered them) or
	// "sink_failed" (without a journal: Sink refused them, or its reader
	// stalled; the other sinks have them).
	Reason string `json:"reason"`
	// Sink names the sink that lost them (quota and sink_failed only).
	Sink string `json:"sink,omitempty"`
	// FromSeq and ToSeq bound the lost records (quota and sink_failed
	// only).
	FromSeq uint64 `json:"fromSeq,omitempty"`
	ToSeq   uint64 `json:"toSeq,omitempty"`
}

// Endpoint is a network address split for SIEM indexing.
type Endpoint struct {
	Address string `json:"address,omitempty"`
	Port    int    `json:"port,omitempty"`
}

// Upstream is where the gateway sent the request.
type Upstream struct {
	// URL is the configured upstream (ingress) or the destination origin (egress),
	// without userinfo.
	URL string `json:"url,omitempty"`
	// SPIFFEID is the upstream's verified SPIFFE ID (ingress mTLS).
	SPIFFEID string `json:"spiffeId,omitempty"`
	// Address is the ip:port actually dialled (egress checks it before the dial).
	Address string `json:"address,omitempty"`
	// TLSVersion is the TLS version of the outbound leg (egress origination).
	TLSVersion string `json:"tlsVersion,omitempty"`
}

// Auth is the verified identity of the request's credential. It never holds the
// credential itself.
type Auth struct {
	Principal string `json:"principal,omitempty"`
	Issuer    string `json:"issuer,omitempty"`
	Subject   string `json:"subject,omitempty"`
}

// timeLayout is RFC 3339 with exactly three fractional digits, so that lines sort
// and fingerprint consistently in shippers.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// wireEvent is Event with its two computed fields in the shape they take on the wire.
// Its outer fields shadow nothing: Event's Time and Duration are tagged "-".
type wireEvent struct {
	Time       string  `json:"time"`
	DurationMs float64 `json:"durationMs"`
	*plainEvent
}

// plainEvent has Event's fields without its methods, so encoding it does not recurse.
type plainEvent Event

// MarshalJSON encodes the event with time as RFC 3339 UTC milliseconds and duration
// as durationMs (see AppendJSON).
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 512)), nil
}

// UnmarshalJSON decodes what MarshalJSON produces; the SIEM pipeline's replay and the
// tests read events back with it.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	w.plainEvent = (*plainEvent)(e)
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	e.Time = time.Time{}
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			return err
		}
		e.Time = t
	}
	e.Duration = time.Duration(math.Round(w.DurationMs * float64(time.Millisecond)))
	return nil
}

// durationMs rounds to the microsecond: finer is noise, coarser hides fast paths.
func durationMs(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)/time.Microsecond) / 1000
}
