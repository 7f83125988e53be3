package audit

import (
	"strconv"
	"unicode/utf8"

	"tollgate.dev/tollgate/internal/request"
)

// AppendJSON appends the event's JSON form (the same bytes MarshalJSON returns) to
// dst. It is written out by hand because the audit writer encodes one event per
// request: reflection-based encoding cost more CPU than the rest of the gateway's
// own request handling. TestAppendJSONMatchesEncodingJSON and FuzzAppendJSON keep
// it identical to what encoding/json makes of the same event.
func (e *Event) AppendJSON(dst []byte) []byte {
	b := append(dst, `{"time":`...)
	b = append(b, '"')
	b = e.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","durationMs":`...)
	b = strconv.AppendFloat(b, durationMs(e.Duration), 'f', -1, 64)
	b = appendStr(b, "id", e.ID, true)
	if e.Sequence != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, e.Sequence, 10)
	}
	b = appendStr(b, "requestId", e.RequestID, true)
	b = appendStr(b, "traceId", e.TraceID, true)
	b = appendStr(b, "instance", e.Instance, true)
	b = appendStr(b, "kind", string(e.Kind), false)
	b = appendEndpoint(b, "client", e.Client)
	b = appendEndpoint(b, "listener", e.Listener)
	b = appendStr(b, "sni", e.SNI, true)
	b = appendStr(b, "tlsVersion", e.TLSVersion, true)
	b = appendStr(b, "tlsCipher", e.TLSCipher, true)
	b = appendStr(b, "host", e.Host, true)
	b = appendStr(b, "method", e.Method, true)
	b = appendStr(b, "path", e.Path, true)
	b = appendStr(b, "query", e.Query, true)
	b = appendStr(b, "protocol", e.Protocol, true)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytesIn":`...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, `,"bytesOut":`...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	b = appendStr(b, "userAgent", e.UserAgent, true)
	b = appendStr(b, "route", e.Route, true)
	if e.Upstream != (Upstream{}) {
		b = append(b, `,"upstream":{`...)
		n := len(b)
		b = appendStr(b, "url", e.Upstream.URL, true)
		b = appendStr(b, "spiffeId", e.Upstream.SPIFFEID, true)
		b = appendStr(b, "address", e.Upstream.Address, true)
		b = appendStr(b, "tlsVersion", e.Upstream.TLSVersion, true)
		b = closeObject(b, n)
	}
	b = appendStr(b, "sourcePrincipal", e.SourcePrincipal, true)
	if a := e.Auth; a != nil {
		b = append(b, `,"auth":{`...)
		n := len(b)
		b = appendStr(b, "principal", a.Principal, true)
		b = appendStr(b, "issuer", a.Issuer, true)
		b = appendStr(b, "subject", a.Subject, true)
		b = closeObject(b, n)
	}
	if d := e.Decision; d != nil {
		b = append(b, `,"decision":`...)
		b = appendDecision(b, d)
	}
	b = appendStr(b, "error", string(e.Error), true)
	b = appendStr(b, "tlsError", e.TLSError, true)
	if e.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	b = appendStr(b, "phase", e.Phase, true)
	if g := e.Gap; g != nil {
		b = append(b, `,"gap":{"dropped":`...)
		b = strconv.AppendUint(b, g.Dropped, 10)
		b = appendStr(b, "reason", g.Reason, false)
		b = appendStr(b, "sink", g.Sink, true)
		if g.FromSeq != 0 {
			b = append(b, `,"fromSeq":`...)
			b = strconv.AppendUint(b, g.FromSeq, 10)
		}
		if g.ToSeq != 0 {
			b = append(b, `,"toSeq":`...)
			b = strconv.AppendUint(b, g.ToSeq, 10)
		}
		b = append(b, '}')
	}
	if c := e.Checkpoint; c != nil {
		b = append(b, `,"checkpoint":{"seq":`...)
		b = strconv.AppendUint(b, c.Seq, 10)
		b = appendStr(b, "hash", c.Hash, false)
		b = appendStr(b, "keyId", c.KeyID, false)
		b = appendStr(b, "sig", c.Sig, false)
		b = append(b, '}')
	}
	// Last, so that the journal's hash covers everything before it.
	b = appendStr(b, "prev", e.Prev, true)
	return append(b, '}')
}

// appendDecision writes d as request.Decision's MarshalJSON does.
func appendDecision(b []byte, d *request.Decision) []byte {
	b = append(b, `{"allow":`...)
	b = strconv.AppendBool(b, d.Allow)
	b = appendStr(b, "action", d.Action, true)
	b = appendStr(b, "policy", d.Policy, true)
	if d.DryRun {
		b = append(b, `,"dryRun":true`...)
	}
	b = appendStr(b, "policyVersion", d.PolicyVersion, true)
	b = appendStr(b, "reason", d.Reason, true)
	if d.Audit {
		b = append(b, `,"audit":true`...)
	}
	b = appendStr(b, "auditPolicy", d.AuditPolicy, true)
	if len(d.Shadow) > 0 {
		b = append(b, `,"shadow":[`...)
		for i := range d.Shadow {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendDecision(b, &d.Shadow[i])
		}
		b = append(b, ']')
	}
	if d.HasRule() {
		b = append(b, `,"rule":`...)
		b = strconv.AppendInt(b, int64(d.Rule), 10)
	}
	return append(b, '}')
}

func appendEndpoint(b []byte, name string, ep Endpoint) []byte {
	if ep == (Endpoint{}) {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, `":{`...)
	n := len(b)
	b = appendStr(b, "address", ep.Address, true)
	if ep.Port != 0 {
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(b, `"port":`...)
		b = strconv.AppendInt(b, int64(ep.Port), 10)
	}
	return closeObject(b, n)
}

// closeObject ends an object whose members were appended with a leading comma
// each: the first member's comma (right after the '{' at n-1) is dropped.
func closeObject(b []byte, n int) []byte {
	if len(b) > n && b[n] == ',' {
		copy(b[n:], b[n+1:])
		b = b[:len(b)-1]
	}
	return append(b, '}')
}

// appendStr appends `,"name":"value"`, or nothing for an empty value when
// omitEmpty is set.
func appendStr(b []byte, name, v string, omitEmpty bool) []byte {
	if v == "" && omitEmpty {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does with HTML escaping off: '"', '\\'
// and control characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped (JavaScript line terminators).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
