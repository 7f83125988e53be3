package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// OCSFVersion is the OCSF schema version of AppendOCSF's records.
const OCSFVersion = "1.8.0"

// Product names the gateway in formatted records (OCSF metadata.product,
// ECS observer, CEF header).
type Product struct {
	Name, Vendor, Version string
}

// DefaultProduct is Tollgate at an unknown version.
var DefaultProduct = Product{Name: "Tollgate", Vendor: "Tollgate", Version: "dev"}

// OCSF 1.8.0 HTTP Activity (category 4, Network Activity; class 4002) with
// the security_control, network_proxy, trace, datetime and host profiles
// (host brings actor: the user or workload that made the request).
const (
	ocsfCategory = 4
	ocsfClass    = 4002
)

// ocsfActivity maps an HTTP method to HTTP Activity's activity_id; other
// methods are 99 (Other).
var ocsfActivity = map[string]struct {
	id      int
	caption string
}{
	"CONNECT": {1, "Connect"}, "DELETE": {2, "Delete"}, "GET": {3, "Get"}, "HEAD": {4, "Head"},
	"OPTIONS": {5, "Options"}, "POST": {6, "Post"}, "PUT": {7, "Put"}, "TRACE": {8, "Trace"}, "PATCH": {9, "Patch"},
}

var ocsfSeverity = map[int]string{1: "Informational", 2: "Low", 3: "Medium"}

type ocsfEvent struct {
	ActivityID     int               `json:"activity_id"`
	ActivityName   string            `json:"activity_name"`
	CategoryUID    int               `json:"category_uid"`
	CategoryName   string            `json:"category_name"`
	ClassUID       int               `json:"class_uid"`
	ClassName      string            `json:"class_name"`
	TypeUID        int               `json:"type_uid"`
	TypeName       string            `json:"type_name"`
	SeverityID     int               `json:"severity_id"`
	Severity       string            `json:"severity"`
	Time           int64             `json:"time"`
	TimeDt         string            `json:"time_dt"`
	Duration       int64             `json:"duration"`
	StatusID       int               `json:"status_id"`
	Status         string            `json:"status"`
	StatusCode     string            `json:"status_code,omitempty"`
	StatusDetail   string            `json:"status_detail,omitempty"`
	ActionID       int               `json:"action_id,omitempty"`
	Action         string            `json:"action,omitempty"`
	DispositionID  int               `json:"disposition_id,omitempty"`
	Disposition    string            `json:"disposition,omitempty"`
	Message        string            `json:"message,omitempty"`
	Metadata       ocsfMetadata      `json:"metadata"`
	SrcEndpoint    *ocsfEndpoint     `json:"src_endpoint,omitempty"`
	DstEndpoint    *ocsfEndpoint     `json:"dst_endpoint,omitempty"`
	ProxyEndpoint  *ocsfEndpoint     `json:"proxy_endpoint,omitempty"`
	HTTPRequest    *ocsfHTTPRequest  `json:"http_request,omitempty"`
	HTTPResponse   *ocsfHTTPResponse `json:"http_response,omitempty"`
	TLS            *ocsfTLS          `json:"tls,omitempty"`
	ProxyTLS       *ocsfTLS          `json:"proxy_tls,omitempty"`
	ConnectionInfo *ocsfConnInfo     `json:"connection_info,omitempty"`
	Traffic        *ocsfTraffic      `json:"traffic,omitempty"`
	Actor          *ocsfActor        `json:"actor,omitempty"`
	Policy         *ocsfPolicy       `json:"policy,omitempty"`
	FirewallRule   *ocsfRule         `json:"firewall_rule,omitempty"`
	Trace          *ocsfTrace        `json:"trace,omitempty"`
	Unmapped       map[string]any    `json:"unmapped,omitempty"`
}

type ocsfMetadata struct {
	Version        string       `json:"version"`
	Product        ocsfProduct  `json:"product"`
	UID            string       `json:"uid,omitempty"`
	Sequence       uint64       `json:"sequence,omitempty"`
	CorrelationUID string       `json:"correlation_uid,omitempty"`
	LogName        string       `json:"log_name"`
	Loggers        []ocsfLogger `json:"loggers,omitempty"`
	Profiles       []string     `json:"profiles"`
}

// ocsfLogger names the gateway instance that logged the record.
type ocsfLogger struct {
	Name    string      `json:"name"`
	Product ocsfProduct `json:"product"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version,omitempty"`
}

type ocsfEndpoint struct {
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	UID      string `json:"uid,omitempty"`
	Name     string `json:"name,omitempty"`
}

type ocsfHTTPRequest struct {
	HTTPMethod string   `json:"http_method,omitempty"`
	URL        *ocsfURL `json:"url,omitempty"`
	UserAgent  string   `json:"user_agent,omitempty"`
	Version    string   `json:"version,omitempty"`
	UID        string   `json:"uid,omitempty"`
	Length     int64    `json:"length,omitempty"`
}

type ocsfURL struct {
	Hostname    string `json:"hostname,omitempty"`
	Path        string `json:"path,omitempty"`
	QueryString string `json:"query_string,omitempty"`
	Scheme      string `json:"scheme,omitempty"`
	Port        int    `json:"port,omitempty"`
	URLString   string `json:"url_string,omitempty"`
}

type ocsfHTTPResponse struct {
	Code    int   `json:"code"`
	Latency int64 `json:"latency"`
	Length  int64 `json:"length"`
}

type ocsfTLS struct {
	Version string `json:"version"`
	Cipher  string `json:"cipher,omitempty"`
	SNI     string `json:"sni,omitempty"`
}

type ocsfConnInfo struct {
	DirectionID  int    `json:"direction_id"`
	Direction    string `json:"direction"`
	ProtocolName string `json:"protocol_name"`
}

type ocsfTraffic struct {
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

type ocsfActor struct {
	User *ocsfUser `json:"user,omitempty"`
	IDP  *ocsfIDP  `json:"idp,omitempty"`
}

type ocsfUser struct {
	UID    string `json:"uid"`
	Name   string `json:"name,omitempty"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type"`
}

type ocsfIDP struct {
	UID string `json:"uid"`
}

type ocsfPolicy struct {
	Name      string `json:"name,omitempty"`
	UID       string `json:"uid,omitempty"`
	Version   string `json:"version,omitempty"`
	Desc      string `json:"desc,omitempty"`
	IsApplied bool   `json:"is_applied"`
}

type ocsfRule struct {
	UID          string   `json:"uid,omitempty"`
	Name         string   `json:"name,omitempty"`
	MatchDetails []string `json:"match_details,omitempty"`
}

type ocsfTrace struct {
	UID string `json:"uid"`
}

// AppendOCSF appends the event as an OCSF 1.8.0 HTTP Activity record (one
// JSON object, no newline). The client's leg is src_endpoint, tls and
// http_request; the gateway is proxy_endpoint; the upstream or destination
// is dst_endpoint and proxy_tls (network_proxy profile). The policy decision
// is action, disposition, policy and firewall_rule (security_control
// profile). What OCSF has no place for is under unmapped.tollgate. Records
// of the trail itself (gaps, checkpoints) are not HTTP activity: they are
// projected as OCSF's base event (class 0) with the record under unmapped.
func (e *Event) AppendOCSF(dst []byte, p Product) []byte {
	o := e.ocsf(p)
	b, err := json.Marshal(o)
	if err != nil {
		// Every field is a plain string, number or bool: Marshal can't fail.
		panic("audit: OCSF encoding: " + err.Error())
	}
	return append(dst, b...)
}

func (e *Event) ocsf(p Product) *ocsfEvent {
	t := e.Time.UTC()
	o := &ocsfEvent{
		CategoryUID: ocsfCategory, CategoryName: "Network Activity",
		ClassUID: ocsfClass, ClassName: "HTTP Activity",
		Time: t.UnixMilli(), TimeDt: t.Format(timeLayout),
		Duration: e.Duration.Milliseconds(),
		Metadata: ocsfMetadata{
			Version:        OCSFVersion,
			Product:        ocsfProduct{Name: p.Name, VendorName: p.Vendor, Version: p.Version},
			UID:            e.ID,
			Sequence:       e.Sequence,
			CorrelationUID: e.RequestID,
			LogName:        "audit",
			Loggers:        ocsfLoggers(e.Instance, p),
			Profiles:       []string{"security_control", "network_proxy", "trace", "datetime", "host"},
		},
	}
	if e.Kind == Audit {
		// The trail's own record: OCSF's base event, class 0.
		o.CategoryUID, o.CategoryName, o.ClassUID, o.ClassName = 0, "Uncategorized", 0, "Base Event"
		o.ActivityID, o.ActivityName, o.TypeUID, o.TypeName = 99, "Other", 99, "Base Event: Other"
		o.SeverityID, o.Severity = 1, "Informational"
		o.StatusID, o.Status = 1, "Success"
		o.Metadata.Profiles = []string{"datetime"}
		switch {
		case e.Gap != nil:
			o.SeverityID, o.Severity = 3, "Medium"
			o.Message = "audit records lost: " + strconv.FormatUint(e.Gap.Dropped, 10) + " (" + e.Gap.Reason + ")"
			o.Unmapped = map[string]any{"tollgate": map[string]any{"gap": e.Gap}}
		case e.Checkpoint != nil:
			o.Message = "audit journal checkpoint"
			o.Unmapped = map[string]any{"tollgate": map[string]any{"checkpoint": e.Checkpoint}}
		}
		return o
	}

	if e.Error == ErrTLSHandshake {
		return e.ocsfHandshake(o)
	}
	act, ok := ocsfActivity[e.Method]
	if !ok {
		act.id, act.caption = 99, "Other"
	}
	o.ActivityID, o.ActivityName = act.id, act.caption
	o.TypeUID = ocsfClass*100 + act.id
	o.TypeName = "HTTP Activity: " + act.caption

	denied := e.Decision != nil && !e.Decision.Allow && !e.Decision.DryRun
	failed := e.Status >= 400 || e.Status == 0 || e.Error != ""
	o.SeverityID = 1
	switch {
	case denied || e.Error == ErrUnauthenticated:
		o.SeverityID = 3
	case failed:
		o.SeverityID = 2
	}
	o.Severity = ocsfSeverity[o.SeverityID]
	o.StatusID, o.Status = 1, "Success"
	switch {
	case e.Phase == PhaseDecision:
		// Journaled before the request was forwarded: no outcome yet.
		o.StatusID, o.Status, o.SeverityID, o.Severity = 0, "Unknown", 1, "Informational"
	case failed:
		o.StatusID, o.Status = 2, "Failure"
	}
	if e.Status != 0 {
		o.StatusCode = strconv.Itoa(e.Status)
	}
	o.StatusDetail = string(e.Error)
	switch {
	case denied:
		o.ActionID, o.Action, o.DispositionID, o.Disposition = 2, "Denied", 2, "Blocked"
	case e.Error == ErrUnauthenticated:
		o.ActionID, o.Action, o.DispositionID, o.Disposition = 2, "Denied", 26, "Unauthorized"
	case e.Decision != nil && e.Decision.Allow:
		o.ActionID, o.Action, o.DispositionID, o.Disposition = 1, "Allowed", 1, "Allowed"
	case e.Decision != nil: // dry-run deny: logged, not enforced
		o.ActionID, o.Action, o.DispositionID, o.Disposition = 3, "Observed", 17, "Logged"
	}

	if ep := ocsfEndpointOf(e.Client); ep != nil {
		o.SrcEndpoint = ep
	}
	o.ProxyEndpoint = ocsfEndpointOf(e.Listener)
	o.DstEndpoint = e.ocsfDestination()
	if e.Method != "" {
		o.HTTPRequest = &ocsfHTTPRequest{
			HTTPMethod: e.Method, UserAgent: e.UserAgent, UID: e.RequestID, Length: e.BytesIn,
			Version: strings.TrimPrefix(e.Protocol, "HTTP/"),
			URL:     &ocsfURL{Hostname: hostOnly(e.Host), Path: e.Path, QueryString: e.Query, Scheme: e.scheme()},
		}
		if e.Path == "" {
			o.HTTPRequest.URL.Path = "/"
		}
	}
	if e.Status != 0 {
		o.HTTPResponse = &ocsfHTTPResponse{Code: e.Status, Latency: e.Duration.Milliseconds(), Length: e.BytesOut}
	} else if o.HTTPRequest == nil {
		o.HTTPResponse = &ocsfHTTPResponse{} // refused before a request was read: code 0
	}
	if e.TLSVersion != "" {
		o.TLS = &ocsfTLS{Version: strings.TrimPrefix(e.TLSVersion, "TLS "), Cipher: e.TLSCipher, SNI: e.SNI}
	}
	if v := e.Upstream.TLSVersion; v != "" {
		o.ProxyTLS = &ocsfTLS{Version: strings.TrimPrefix(v, "TLS ")}
	}
	o.ConnectionInfo = &ocsfConnInfo{DirectionID: 1, Direction: "Inbound", ProtocolName: "tcp"}
	if e.Kind == Egress {
		o.ConnectionInfo.DirectionID, o.ConnectionInfo.Direction = 2, "Outbound"
	}
	// OCSF's bytes_out flow from the source (the client) to the
	// destination: the request body; bytes_in, the answer.
	o.Traffic = &ocsfTraffic{BytesOut: e.BytesIn, BytesIn: e.BytesOut}
	o.Actor = e.ocsfActor()
	if d := e.Decision; d != nil {
		o.Policy = &ocsfPolicy{Name: d.Policy, UID: d.Policy, Version: d.PolicyVersion, Desc: d.Reason, IsApplied: !d.DryRun}
		if d.Policy == "" {
			o.Policy.Name = "default"
		}
		if d.HasRule() {
			rule := "rules[" + strconv.Itoa(d.Rule) + "]"
			o.FirewallRule = &ocsfRule{UID: d.Policy + "/" + rule, Name: rule}
			if d.Reason != "" {
				o.FirewallRule.MatchDetails = []string{d.Reason}
			}
		}
	}
	if e.TraceID != "" {
		o.Trace = &ocsfTrace{UID: e.TraceID}
	}
	tg := map[string]any{"kind": string(e.Kind)}
	if e.Route != "" {
		tg["route"] = e.Route
	}
	if e.Upstream.URL != "" {
		tg["upstreamUrl"] = e.Upstream.URL
	}
	if e.Phase != "" {
		tg["phase"] = e.Phase
	}
	if d := e.Decision; d != nil && (d.DryRun || d.Audit) {
		tg["dryRun"], tg["auditMatched"] = d.DryRun, d.Audit
	}
	if e.Truncated {
		tg["truncated"] = true
	}
	o.Unmapped = map[string]any{"tollgate": tg}
	return o
}

// ocsfEndpointOf is ep as an OCSF endpoint, nil when unknown.
func ocsfEndpointOf(ep Endpoint) *ocsfEndpoint {
	if ep.Address == "" {
		return nil
	}
	return &ocsfEndpoint{IP: ep.Address, Port: ep.Port}
}

// ocsfDestination is where the request went: the upstream (ingress, mesh)
// or the destination (egress), by the address dialled when known.
func (e *Event) ocsfDestination() *ocsfEndpoint {
	d := &ocsfEndpoint{Hostname: hostOnly(e.Host), UID: e.Upstream.SPIFFEID}
	if host, port, err := net.SplitHostPort(e.Upstream.Address); err == nil {
		d.IP = host
		d.Port, _ = strconv.Atoi(port)
	}
	if d.Hostname == "" && d.IP == "" && d.UID == "" {
		return nil
	}
	return d
}

func (e *Event) ocsfActor() *ocsfActor {
	switch {
	case e.Auth != nil && (e.Auth.Subject != "" || e.Auth.Principal != ""):
		a := &ocsfActor{User: &ocsfUser{UID: e.Auth.Principal, Name: e.Auth.Subject, TypeID: 1, Type: "User"}}
		if a.User.UID == "" {
			a.User.UID = e.Auth.Subject
		}
		if e.Auth.Issuer != "" {
			a.IDP = &ocsfIDP{UID: e.Auth.Issuer}
		}
		return a
	case e.SourcePrincipal != "":
		// A workload, by its SPIFFE ID.
		return &ocsfActor{User: &ocsfUser{UID: e.SourcePrincipal, TypeID: 4, Type: "Service"}}
	}
	return nil
}

func (e *Event) scheme() string {
	if e.Kind == Egress || e.TLSVersion != "" {
		return "https"
	}
	return "http"
}

// hostOnly strips a port from host.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// Format is how a sink writes records.
type Format string

const (
	// FormatNative is the event as documented in this package (doc.go),
	// the journal's own lines.
	FormatNative Format = "native"
	// FormatOCSF is OCSF 1.8.0 HTTP Activity (see Event.AppendOCSF).
	FormatOCSF Format = "ocsf"
	// FormatECS is an Elastic Common Schema document (Event.AppendECS).
	FormatECS Format = "ecs"
	// FormatCEF is an ArcSight CEF:0 line (Event.AppendCEF).
	FormatCEF Format = "cef"
)

// formatter turns a native line into a sink's format (nil: as is).
func formatter(f Format, p Product) (func(dst, line []byte) ([]byte, error), error) {
	var project func(e *Event, dst []byte, p Product) []byte
	switch f {
	case "", FormatNative:
		return nil, nil
	case FormatOCSF:
		project = (*Event).AppendOCSF
	case FormatECS:
		project = (*Event).AppendECS
	case FormatCEF:
		project = (*Event).AppendCEF
	default:
		return nil, fmt.Errorf("audit: unknown format %q (want %s, %s, %s or %s)", f, FormatNative, FormatOCSF, FormatECS, FormatCEF)
	}
	return func(dst, line []byte) ([]byte, error) {
		var ev Event
		if err := ev.UnmarshalJSON(bytes.TrimSuffix(line, []byte("\n"))); err != nil {
			return dst, fmt.Errorf("audit: record to %s: %w", f, err)
		}
		return append(project(&ev, dst, p), '\n'), nil
	}, nil
}

// ocsfHandshake projects a failed TLS handshake as OCSF Network Activity
// (class 4001): Refuse when the gateway refused the client (no or a bad
// certificate, parameters it doesn't accept, not TLS), Fail otherwise.
func (e *Event) ocsfHandshake(o *ocsfEvent) *ocsfEvent {
	o.ClassUID, o.ClassName = 4001, "Network Activity"
	o.ActivityID, o.ActivityName = 4, "Fail"
	switch e.TLSError {
	case "no_client_certificate", "bad_client_certificate", "unsupported_parameters", "not_tls":
		o.ActivityID, o.ActivityName = 5, "Refuse"
		o.ActionID, o.Action, o.DispositionID, o.Disposition = 2, "Denied", 2, "Blocked"
	}
	o.TypeUID, o.TypeName = 4001*100+o.ActivityID, "Network Activity: "+o.ActivityName
	o.SeverityID, o.Severity = 2, "Low"
	if e.TLSError == "bad_client_certificate" {
		o.SeverityID, o.Severity = 3, "Medium"
	}
	o.StatusID, o.Status = 2, "Failure"
	o.StatusDetail = "tls_handshake: " + e.TLSError
	o.Metadata.Profiles = []string{"security_control", "datetime"}
	o.SrcEndpoint = ocsfEndpointOf(e.Client)
	o.DstEndpoint = ocsfEndpointOf(e.Listener)
	if o.DstEndpoint != nil {
		o.DstEndpoint.Hostname = e.SNI
	}
	o.ConnectionInfo = &ocsfConnInfo{DirectionID: 1, Direction: "Inbound", ProtocolName: "tcp"}
	// Inbound even on the egress listener: the workload connects to the
	// gateway.
	o.Unmapped = map[string]any{"tollgate": map[string]any{"kind": string(e.Kind)}}
	return o
}

func ocsfLoggers(instance string, p Product) []ocsfLogger {
	if instance == "" {
		return nil
	}
	return []ocsfLogger{{Name: instance, Product: ocsfProduct{Name: p.Name, VendorName: p.Vendor, Version: p.Version}}}
}
