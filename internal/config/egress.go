package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Egress is the way out of the mesh: workloads connect with their SVIDs (mTLS)
// and use the gateway as an HTTPS proxy for the outside world. Destinations
// are declared with Istio ServiceEntry and DestinationRule documents in the
// policy files; AuthorizationPolicy documents selecting the egress listener's
// labels judge every call.
type Egress struct {
	// Listen is the egress listener's address (mTLS: callers present SVIDs).
	Listen string `yaml:"listen"`
	// Labels are matched by policies' spec.selector.matchLabels; default
	// {tollgate.dev/listener: egress}.
	Labels map[string]string `yaml:"labels"`
	// Namespace is the listener's Istio namespace, as Ingress.Namespace.
	Namespace string `yaml:"namespace"`
	// AllowedCallers are SPIFFE ID patterns of the workloads that may connect
	// at all; policy then judges each call. Empty: any ID in the gateway's own
	// trust domain.
	AllowedCallers []string `yaml:"allowedCallers"`
	// Timeouts of the listener and of the calls out (upstream: the wait for a
	// destination's response headers; dial: TCP + TLS to a destination).
	Timeouts Timeouts `yaml:"timeouts"`
	Limits   Limits   `yaml:"limits"`
	// Normalization and HeadersWithUnderscores are as the ingress's, for the
	// calls workloads make.
	Normalization          Normalization `yaml:"normalization"`
	HeadersWithUnderscores string        `yaml:"headersWithUnderscores"`
	// AllowCIDRs are addresses the SSRF guard lets destinations resolve to
	// although they are loopback, private, link-local or otherwise internal.
	// Empty (the default): only public addresses are dialled.
	AllowCIDRs []string `yaml:"allowCIDRs"`
	// Credentials are secrets the gateway adds to calls to a destination, so
	// that workloads never hold them.
	Credentials []EgressCredential `yaml:"credentials"`
	// OutboundTrafficPolicy is Istio's: mode REGISTRY_ONLY (the default)
	// refuses hosts no ServiceEntry declares; ALLOW_ANY lets them be called,
	// still judged by policy and the SSRF guard.
	OutboundTrafficPolicy OutboundTrafficPolicy `yaml:"outboundTrafficPolicy"`
	// Resolvers are DNS servers ("ip" or "ip:port") the SSRF guard asks
	// instead of the system's resolver; answers are cached no longer than
	// their TTL (at most 5 minutes). ResolverTimeout bounds each query.
	Resolvers       []string      `yaml:"resolvers"`
	ResolverTimeout time.Duration `yaml:"resolverTimeout"`
	// AuditQueryValues names the query parameters whose values audit events
	// record; every other value is redacted (the keys are kept).
	AuditQueryValues []string `yaml:"auditQueryValues"`
}

// OutboundTrafficPolicy is Istio's MeshConfig.OutboundTrafficPolicy.
type OutboundTrafficPolicy struct {
	Mode string `yaml:"mode"`
}

// EgressCredential injects secrets into every HTTP call to one destination,
// after the call is authorized; client-sent copies of its headers are
// removed before policy judges the call.
type EgressCredential struct {
	// Host is a destination host as its ServiceEntry names it
	// (api.example.com, or *.example.com).
	Host    string             `yaml:"host"`
	Headers []CredentialHeader `yaml:"headers"`
	OAuth2  *CredentialOAuth2  `yaml:"oauth2"`
}

// CredentialHeader is a header whose value is read from a file (reloaded when
// it changes).
type CredentialHeader struct {
	Name   string `yaml:"name"`
	File   string `yaml:"file"`
	Prefix string `yaml:"prefix"` // e.g. "Bearer "
}

// CredentialOAuth2 obtains an access token with the client-credentials grant
// and sends it in Header (Authorization by default) as "Bearer <token>".
type CredentialOAuth2 struct {
	TokenURL         string   `yaml:"tokenURL"`
	ClientID         string   `yaml:"clientID"`
	ClientSecretFile string   `yaml:"clientSecretFile"`
	Scopes           []string `yaml:"scopes"`
	Header           string   `yaml:"header"`
	// RefreshBefore is how long before expiry a token is replaced.
	RefreshBefore time.Duration `yaml:"refreshBefore"`
}

// Workload is the scope policy documents are chosen by for the egress
// listener.
func (e *Egress) Workload() Workload {
	return Workload{Namespace: e.Namespace, Labels: e.Labels}
}

func (e *Egress) applyDefaults() {
	if e.OutboundTrafficPolicy.Mode == "" {
		e.OutboundTrafficPolicy.Mode = "REGISTRY_ONLY"
	}
	if e.Labels == nil {
		e.Labels = map[string]string{"tollgate.dev/listener": "egress"}
	}
	e.Timeouts.applyDefaults()
	e.Limits.applyDefaults()
	e.Normalization.applyDefaults()
	if e.HeadersWithUnderscores == "" {
		e.HeadersWithUnderscores = DefaultHeadersWithUnderscores
	}
}

func (v *validator) egress(e *Egress) {
	if e == nil {
		return
	}
	if e.Listen == "" {
		v.errorf("egress.listen", "required")
	} else {
		v.listenAddr("egress.listen", e.Listen)
	}
	v.namespace("egress.namespace", e.Namespace)
	for i, p := range e.AllowedCallers {
		if err := CheckSPIFFEPattern(p); err != nil {
			v.errorf(fmt.Sprintf("egress.allowedCallers[%d]", i), "%v", err)
		}
	}
	v.limits("egress.limits", e.Limits)
	v.normalization("egress.normalization", e.Normalization)
	v.underscores("egress.headersWithUnderscores", e.HeadersWithUnderscores)
	if m := e.OutboundTrafficPolicy.Mode; m != "REGISTRY_ONLY" && m != "ALLOW_ANY" {
		v.errorf("egress.outboundTrafficPolicy.mode", "want REGISTRY_ONLY or ALLOW_ANY (got %q)", m)
	}
	for i, r := range e.Resolvers {
		host := r
		if h, _, err := net.SplitHostPort(r); err == nil {
			host = h
		}
		if _, err := netip.ParseAddr(host); err != nil {
			v.errorf(fmt.Sprintf("egress.resolvers[%d]", i), "want an IP address, optionally with :port (got %q)", r)
		}
	}
	for i, c := range e.Credentials {
		p := fmt.Sprintf("egress.credentials[%d]", i)
		if c.Host == "" {
			v.errorf(p+".host", "required: the destination host the credential is for")
		}
		if len(c.Headers) == 0 && c.OAuth2 == nil {
			v.errorf(p, "set headers, oauth2, or both")
		}
		for j, h := range c.Headers {
			hp := fmt.Sprintf("%s.headers[%d]", p, j)
			if h.Name == "" {
				v.errorf(hp+".name", "required")
			}
			if h.File == "" {
				v.errorf(hp+".file", "required: the file holding the value")
			} else if _, err := os.Stat(h.File); err != nil {
				v.errorf(hp+".file", "cannot read %s: %v", h.File, unwrapPathError(err))
			}
		}
		if o := c.OAuth2; o != nil {
			if o.TokenURL == "" {
				v.errorf(p+".oauth2.tokenURL", "required")
			}
			if o.ClientID == "" {
				v.errorf(p+".oauth2.clientID", "required")
			}
			if o.ClientSecretFile == "" {
				v.errorf(p+".oauth2.clientSecretFile", "required")
			} else if _, err := os.Stat(o.ClientSecretFile); err != nil {
				v.errorf(p+".oauth2.clientSecretFile", "cannot read %s: %v", o.ClientSecretFile, unwrapPathError(err))
			}
		}
	}
	for i, c := range e.AllowCIDRs {
		if _, err := parsePrefix(c); err != nil {
			v.errorf(fmt.Sprintf("egress.allowCIDRs[%d]", i), "want an IP or CIDR (got %q)", c)
		} else if strings.HasSuffix(c, "/0") {
			v.errorf(fmt.Sprintf("egress.allowCIDRs[%d]", i), "%s admits every address: it turns the SSRF guard off", c)
		}
	}
}
