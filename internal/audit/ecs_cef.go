package audit

import (
	"cmp"
	"encoding/json"
	"net"
	"strconv"
	"strings"
)

// ECSVersion is the Elastic Common Schema version of AppendECS's records.
const ECSVersion = "9.4.0"

// AppendECS appends the event as an Elastic Common Schema document (one
// JSON object, no newline): event.*, source, destination, url, http,
// user_agent, user, tls, trace, rule, network and observer, with what ECS
// has no field for under "tollgate".
func (e *Event) AppendECS(dst []byte, p Product) []byte {
	b, err := json.Marshal(e.ecs(p))
	if err != nil {
		panic("audit: ECS encoding: " + err.Error()) // plain values only
	}
	return append(dst, b...)
}

func (e *Event) ecs(p Product) map[string]any {
	t := e.Time.UTC()
	ev := map[string]any{
		"kind": "event", "id": e.ID, "dataset": "tollgate.audit", "module": "tollgate",
		"duration": e.Duration.Nanoseconds(), "created": t.Format(timeLayout),
	}
	if e.Sequence != 0 {
		ev["sequence"] = e.Sequence
	}
	doc := map[string]any{
		"@timestamp": t.Format(timeLayout),
		"ecs":        map[string]any{"version": ECSVersion},
		"event":      ev,
		"observer":   map[string]any{"type": "proxy", "vendor": p.Vendor, "product": p.Name, "version": p.Version, "hostname": e.Instance},
	}
	tg := map[string]any{"kind": string(e.Kind)}
	doc["tollgate"] = tg
	if e.Kind == Audit {
		ev["kind"], ev["category"], ev["type"] = "event", []string{"configuration"}, []string{"info"}
		switch {
		case e.Gap != nil:
			ev["action"], ev["outcome"], ev["reason"] = "audit-gap", "failure", e.Gap.Reason
			tg["gap"] = e.Gap
		case e.Checkpoint != nil:
			ev["action"], ev["outcome"] = "audit-checkpoint", "success"
			tg["checkpoint"] = e.Checkpoint
		}
		return doc
	}
	denied := e.Decision != nil && !e.Decision.Allow && !e.Decision.DryRun
	failed := e.Status >= 400 || e.Status == 0 || e.Error != ""
	ev["category"] = []string{"network", "web"}
	types := []string{"access"}
	switch {
	case denied || e.Error == ErrUnauthenticated || e.Error == ErrTLSHandshake:
		types = append(types, "denied")
	case e.Decision != nil && e.Decision.Allow:
		types = append(types, "allowed")
	}
	ev["type"] = types
	ev["outcome"] = "success"
	if failed {
		ev["outcome"] = "failure"
	}
	if e.Phase == PhaseDecision {
		ev["outcome"] = "unknown"
	}
	ev["action"] = "http-request"
	if e.Error == ErrTLSHandshake {
		ev["category"], ev["action"], ev["reason"] = []string{"network"}, "tls-handshake", e.TLSError
		types[0] = "connection"
	}
	if e.Error != "" {
		doc["error"] = map[string]any{"code": string(e.Error)}
	}
	if d := e.Decision; d != nil && d.Reason != "" {
		ev["reason"] = d.Reason
	}
	if e.Client.Address != "" {
		doc["source"] = map[string]any{"ip": e.Client.Address, "port": e.Client.Port, "address": e.Client.Address}
	}
	dest := map[string]any{}
	if h := hostOnly(e.Host); h != "" {
		dest["domain"], dest["address"] = h, h
	}
	if host, port, err := net.SplitHostPort(e.Upstream.Address); err == nil {
		dest["ip"] = host
		dest["port"], _ = strconv.Atoi(port)
		if dest["address"] == nil {
			dest["address"] = host
		}
	}
	if len(dest) > 0 {
		doc["destination"] = dest
	}
	if e.Method != "" {
		doc["url"] = map[string]any{"domain": hostOnly(e.Host), "path": e.Path, "query": e.Query, "scheme": e.scheme()}
		doc["http"] = map[string]any{
			"version":  strings.TrimPrefix(e.Protocol, "HTTP/"),
			"request":  map[string]any{"id": e.RequestID, "method": e.Method, "body": map[string]any{"bytes": e.BytesIn}},
			"response": map[string]any{"status_code": e.Status, "body": map[string]any{"bytes": e.BytesOut}},
		}
	}
	if e.UserAgent != "" {
		doc["user_agent"] = map[string]any{"original": e.UserAgent}
	}
	switch {
	case e.Auth != nil && (e.Auth.Principal != "" || e.Auth.Subject != ""):
		doc["user"] = map[string]any{"id": cmp.Or(e.Auth.Principal, e.Auth.Subject), "name": e.Auth.Subject, "domain": e.Auth.Issuer}
	case e.SourcePrincipal != "":
		doc["user"] = map[string]any{"id": e.SourcePrincipal}
	}
	if e.TLSVersion != "" || e.SNI != "" {
		tls := map[string]any{"version_protocol": "tls", "established": e.Error != ErrTLSHandshake}
		if e.TLSVersion != "" {
			tls["version"] = strings.TrimPrefix(e.TLSVersion, "TLS ")
		}
		if e.TLSCipher != "" {
			tls["cipher"] = e.TLSCipher
		}
		if e.SNI != "" {
			tls["client"] = map[string]any{"server_name": e.SNI}
		}
		doc["tls"] = tls
	}
	if e.TraceID != "" {
		doc["trace"] = map[string]any{"id": e.TraceID}
	}
	if d := e.Decision; d != nil {
		rule := map[string]any{"ruleset": d.Policy, "name": cmp.Or(d.Policy, "default"), "version": d.PolicyVersion}
		if d.HasRule() {
			rule["id"] = d.Policy + "/rules[" + strconv.Itoa(d.Rule) + "]"
		}
		doc["rule"] = rule
		if d.DryRun || d.Audit {
			tg["dryRun"], tg["auditMatched"] = d.DryRun, d.Audit
		}
	}
	direction := "inbound"
	if e.Kind == Egress && e.Error != ErrTLSHandshake {
		direction = "outbound"
	}
	doc["network"] = map[string]any{"direction": direction, "transport": "tcp", "protocol": "http"}
	for k, v := range map[string]string{"route": e.Route, "upstreamUrl": e.Upstream.URL, "upstreamSpiffeId": e.Upstream.SPIFFEID, "phase": e.Phase} {
		if v != "" {
			tg[k] = v
		}
	}
	return doc
}

// AppendCEF appends the event as an ArcSight CEF:0 line (no newline):
// the header's class id is "http:<allow|deny|error>", "tls_handshake" or
// "audit:<gap|checkpoint>", and the extension carries the rest in CEF's own
// keys (rt, src, spt, dst, dpt, dhost, request, requestMethod, act,
// outcome, in, out, suser, externalId, deviceDirection) and six labelled
// custom strings (policy, rule, request id, trace id, workload, reason).
func (e *Event) AppendCEF(dst []byte, p Product) []byte {
	class, name, sev := e.cefClass()
	b := append(dst, "CEF:0|"...)
	for _, h := range []string{p.Vendor, p.Name, p.Version, class, name} {
		b = appendCEFHeader(b, h)
		b = append(b, '|')
	}
	b = strconv.AppendInt(b, int64(sev), 10)
	b = append(b, '|')
	ext := [][2]string{{"rt", strconv.FormatInt(e.Time.UnixMilli(), 10)}, {"externalId", e.ID}}
	if e.Instance != "" {
		ext = append(ext, [2]string{"dvchost", e.Instance})
	}
	if e.Sequence != 0 {
		ext = append(ext, [2]string{"cn1Label", "sequence"}, [2]string{"cn1", strconv.FormatUint(e.Sequence, 10)})
	}
	if e.Client.Address != "" {
		ext = append(ext, [2]string{"src", e.Client.Address}, [2]string{"spt", strconv.Itoa(e.Client.Port)})
	}
	if host, port, err := net.SplitHostPort(e.Upstream.Address); err == nil {
		ext = append(ext, [2]string{"dst", host}, [2]string{"dpt", port})
	}
	if h := hostOnly(e.Host); h != "" {
		ext = append(ext, [2]string{"dhost", h})
	}
	if e.Method != "" {
		u := e.scheme() + "://" + e.Host + e.Path
		if e.Query != "" {
			u += "?" + e.Query
		}
		ext = append(ext, [2]string{"request", u}, [2]string{"requestMethod", e.Method})
	}
	if e.UserAgent != "" {
		ext = append(ext, [2]string{"requestClientApplication", e.UserAgent})
	}
	if e.Kind != Audit {
		act, outcome := "allow", "success"
		switch {
		case strings.HasSuffix(class, "deny"), class == "tls_handshake":
			act = "deny"
		case e.Decision == nil:
			act = "none"
		}
		if e.Status >= 400 || e.Status == 0 || e.Error != "" {
			outcome = "failure"
		}
		direction := "0"
		if e.Kind == Egress && e.Error != ErrTLSHandshake {
			direction = "1"
		}
		ext = append(ext, [2]string{"act", act}, [2]string{"outcome", outcome}, [2]string{"deviceDirection", direction},
			[2]string{"in", strconv.FormatInt(e.BytesIn, 10)}, [2]string{"out", strconv.FormatInt(e.BytesOut, 10)})
		if e.Status != 0 {
			ext = append(ext, [2]string{"cn2Label", "status"}, [2]string{"cn2", strconv.Itoa(e.Status)})
		}
	}
	if a := e.Auth; a != nil && (a.Principal != "" || a.Subject != "") {
		ext = append(ext, [2]string{"suser", cmp.Or(a.Principal, a.Subject)})
	}
	custom := [][2]string{{"policy", ""}, {"rule", ""}, {"requestId", e.RequestID}, {"traceId", e.TraceID}, {"sourcePrincipal", e.SourcePrincipal}, {"reason", ""}}
	if d := e.Decision; d != nil {
		custom[0][1], custom[5][1] = d.Policy, d.Reason
		if d.HasRule() {
			custom[1][1] = "rules[" + strconv.Itoa(d.Rule) + "]"
		}
	}
	switch {
	case e.TLSError != "":
		custom[5][1] = e.TLSError
	case e.Gap != nil:
		custom[5][1] = e.Gap.Reason + ": " + strconv.FormatUint(e.Gap.Dropped, 10) + " records lost"
	}
	for i, c := range custom {
		if c[1] != "" {
			n := strconv.Itoa(i + 1)
			ext = append(ext, [2]string{"cs" + n + "Label", c[0]}, [2]string{"cs" + n, c[1]})
		}
	}
	for i, kv := range ext {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, kv[0]...)
		b = append(b, '=')
		b = appendCEFValue(b, kv[1])
	}
	return b
}

func (e *Event) cefClass() (class, name string, severity int) {
	switch {
	case e.Gap != nil:
		return "audit:gap", "audit records lost", 7
	case e.Checkpoint != nil:
		return "audit:checkpoint", "audit journal checkpoint", 1
	case e.Error == ErrTLSHandshake:
		return "tls_handshake", "TLS handshake failed", 5
	case e.Decision != nil && !e.Decision.Allow && !e.Decision.DryRun, e.Error == ErrUnauthenticated:
		return "http:deny", "HTTP request denied", 6
	case e.Status >= 400 || e.Error != "":
		return "http:error", "HTTP request failed", 4
	}
	return "http:allow", "HTTP request allowed", 2
}

// appendCEFHeader escapes a header field: backslash and pipe; newlines
// become spaces (a header is one line).
func appendCEFHeader(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '|':
			b = append(b, '\\', c)
		case '\n', '\r':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendCEFValue escapes an extension value: backslash and equals sign,
// and newlines as \n and \r.
func appendCEFValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '=':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}
