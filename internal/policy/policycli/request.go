package policycli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"

	"tollgate.dev/tollgate/internal/policy/pathnorm"
	"tollgate.dev/tollgate/internal/request"
)

// Description is the request description `gateway policy eval` reads. Absent
// fields mean absent attributes.
type Description struct {
	Method string `json:"method" yaml:"method"`
	// Host is the authority as a client sends it ("Admin.example.com.:8443");
	// it is canonicalized as the gateway does (request.ParseAuthority), and
	// one the gateway would refuse with 400 is an error.
	Host string `json:"host" yaml:"host"`
	// Port is the destination port: at the ingress, the listener's port.
	Port int `json:"port" yaml:"port"`
	// Path is the raw request-target as sent: it may carry a query, a fragment
	// and escapes, and is normalized as the gateway would.
	Path    string              `json:"path" yaml:"path"`
	Headers map[string][]string `json:"headers" yaml:"headers"`
	Source  *SourceDescription  `json:"source" yaml:"source"`
	// RemoteIP is the original client. When absent it is derived as the
	// gateway derives it: from X-Forwarded-For when source.ip is one of the
	// trusted proxies, else source.ip (request.ClientIP).
	RemoteIP      string           `json:"remoteIP" yaml:"remoteIP"`
	SNI           string           `json:"sni" yaml:"sni"`
	DestinationIP string           `json:"destinationIP" yaml:"destinationIP"`
	Auth          *AuthDescription `json:"auth" yaml:"auth"`
	// Protocol is "http" (the default) or "tcp".
	Protocol string `json:"protocol" yaml:"protocol"`
}

// SourceDescription is the direct peer.
type SourceDescription struct {
	// Principal is the peer's SPIFFE ID ("spiffe://td/ns/x/sa/y").
	Principal string `json:"principal" yaml:"principal"`
	IP        string `json:"ip" yaml:"ip"`
}

// AuthDescription is a verified request identity.
type AuthDescription struct {
	// Principal is "iss/sub". Issuer and subject are taken from the iss and sub
	// claims when present, else Principal is split at its last '/'.
	Principal string         `json:"principal" yaml:"principal"`
	Audiences []string       `json:"audiences" yaml:"audiences"`
	Presenter string         `json:"presenter" yaml:"presenter"`
	Claims    map[string]any `json:"claims" yaml:"claims"`
}

// ReadDescription decodes one JSON request description strictly: unknown
// fields and trailing data are errors.
func ReadDescription(r io.Reader) (*Description, error) {
	src, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var d Description
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("request description: %w", err)
	}
	if dec.More() {
		return nil, errors.New("request description: more than one JSON value")
	}
	d.Auth.normalizeNumbers()
	return &d, nil
}

// normalizeNumbers turns json.Number claims into float64, as a verified JWT
// payload decoded with encoding/json has them.
func (a *AuthDescription) normalizeNumbers() {
	if a == nil {
		return
	}
	var fix func(v any) any
	fix = func(v any) any {
		switch x := v.(type) {
		case json.Number:
			f, _ := x.Float64()
			return f
		case map[string]any:
			for k, e := range x {
				x[k] = fix(e)
			}
		case []any:
			for i, e := range x {
				x[i] = fix(e)
			}
		}
		return v
	}
	for k, v := range a.Claims {
		a.Claims[k] = fix(v)
	}
}

// Request builds what the engine judges, normalizing the path with norm and
// the host exactly as the gateway does; trusted are the gateway's trusted
// proxies. A target or host the gateway would refuse (400) is an error.
func (d *Description) Request(norm pathnorm.Options, trusted []netip.Prefix) (*request.Request, error) {
	r := &request.Request{
		Protocol:    request.HTTP,
		Method:      d.Method,
		Destination: request.Destination{Port: d.Port},
		SNI:         d.SNI,
	}
	if d.Host != "" {
		a, err := request.ParseAuthority(d.Host)
		if err != nil {
			return nil, fmt.Errorf("host %q would be refused with 400: %w", d.Host, err)
		}
		r.Host, r.HostPort = a.Host, a.Port
	}
	switch d.Protocol {
	case "", "http":
	case "tcp":
		r.Protocol = request.TCP
	default:
		return nil, fmt.Errorf("protocol: want \"http\" or \"tcp\" (got %q)", d.Protocol)
	}
	if d.Port < 0 || d.Port > 65535 {
		return nil, fmt.Errorf("port: want 0-65535 (got %d)", d.Port)
	}
	if d.Path != "" {
		res, err := pathnorm.Normalize(d.Path, norm)
		if err != nil {
			return nil, fmt.Errorf("path %q would be refused with 400: %w", d.Path, err)
		}
		r.Path, r.RawQuery = res.Path, res.RawQuery
		if res.RawQuery != "" {
			q, err := pathnorm.ParseQuery(res.RawQuery)
			if err != nil {
				return nil, fmt.Errorf("query %q would be refused with 400: %w", res.RawQuery, err)
			}
			r.Query = q
		}
	}
	if len(d.Headers) > 0 {
		r.Headers = make(map[string][]string, len(d.Headers))
		// Names that differ only in case are one header: merge them in a fixed
		// order so that a description always means the same request.
		for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
			v := d.Headers[k]
			name := textproto.CanonicalMIMEHeaderKey(k)
			r.Headers[name] = append(r.Headers[name], v...)
		}
	}
	var err error
	if d.Source != nil {
		r.Source.Principal = d.Source.Principal
		if r.Source.IP, err = parseIP("source.ip", d.Source.IP); err != nil {
			return nil, err
		}
	}
	if r.RemoteIP, err = parseIP("remoteIP", d.RemoteIP); err != nil {
		return nil, err
	}
	if !r.RemoteIP.IsValid() && r.Source.IP.IsValid() {
		r.RemoteIP = request.ClientIP(r.Source.IP, r.Headers["X-Forwarded-For"], trusted)
	}
	if r.Destination.IP, err = parseIP("destinationIP", d.DestinationIP); err != nil {
		return nil, err
	}
	if a := d.Auth; a != nil {
		auth := &request.Auth{Audiences: a.Audiences, Presenter: a.Presenter, Claims: a.Claims}
		iss, okI := a.Claims["iss"].(string)
		sub, okS := a.Claims["sub"].(string)
		if !okI || !okS {
			if i := strings.LastIndexByte(a.Principal, '/'); i >= 0 {
				iss, sub = a.Principal[:i], a.Principal[i+1:]
			} else {
				iss, sub = a.Principal, ""
			}
		}
		auth.Issuer, auth.Subject = iss, sub
		if auth.Audiences == nil {
			auth.Audiences = stringList(a.Claims["aud"])
		}
		if auth.Presenter == "" {
			auth.Presenter, _ = a.Claims["azp"].(string)
		}
		auth.SetPrincipal()
		r.Auth = auth
	}
	return r, nil
}

func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func parseIP(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: invalid IP address %q", field, s)
	}
	return a, nil
}
