package config

import (
	"fmt"
	"strings"
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
	// AllowCIDRs are addresses the SSRF guard lets destinations resolve to
	// although they are loopback, private, link-local or otherwise internal.
	// Empty (the default): only public addresses are dialled.
	AllowCIDRs []string `yaml:"allowCIDRs"`
}

// Workload is the scope policy documents are chosen by for the egress
// listener.
func (e *Egress) Workload() Workload {
	return Workload{Namespace: e.Namespace, Labels: e.Labels}
}

func (e *Egress) applyDefaults() {
	if e.Labels == nil {
		e.Labels = map[string]string{"tollgate.dev/listener": "egress"}
	}
	e.Timeouts.applyDefaults()
	e.Limits.applyDefaults()
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
	for i, c := range e.AllowCIDRs {
		if _, err := parsePrefix(c); err != nil {
			v.errorf(fmt.Sprintf("egress.allowCIDRs[%d]", i), "want an IP or CIDR (got %q)", c)
		} else if strings.HasSuffix(c, "/0") {
			v.errorf(fmt.Sprintf("egress.allowCIDRs[%d]", i), "%s admits every address: it turns the SSRF guard off", c)
		}
	}
}
