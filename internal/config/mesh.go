package config

import "fmt"

// MeshListener is the ingress's listener for in-mesh callers. It serves the same
// routes as the ingress listener, presents the gateway's SVID as its server
// certificate, and requires each caller to present an SVID that verifies against
// the trust bundles and matches AllowedCallers.
type MeshListener struct {
	Listen string `yaml:"listen"`
	// AllowedCallers are SPIFFE ID patterns (exact, "spiffe://td", "spiffe://td/path/*")
	// of callers that may connect at all; policy then judges each request. Empty
	// means any ID in the gateway's own trust domain.
	AllowedCallers []string `yaml:"allowedCallers"`
	// Labels are matched by policies' spec.selector.matchLabels; default
	// {tollgate.dev/listener: mesh}.
	Labels map[string]string `yaml:"labels"`
	// Namespace is this listener's Istio namespace, as Ingress.Namespace; it
	// defaults to the ingress listener's.
	Namespace string `yaml:"namespace"`
}

// Workload is the scope policy documents are chosen by for the ingress listener.
func (in *Ingress) Workload() Workload {
	return Workload{Namespace: in.Namespace, Labels: in.Labels}
}

// Workload is the scope policy documents are chosen by for the mesh listener.
func (m *MeshListener) Workload() Workload {
	return Workload{Namespace: m.Namespace, Labels: m.Labels}
}

func (v *validator) mesh(m *MeshListener) {
	if m == nil {
		return
	}
	if m.Listen == "" {
		v.errorf("ingress.mesh.listen", "required")
	} else {
		v.listenAddr("ingress.mesh.listen", m.Listen)
	}
	v.namespace("ingress.mesh.namespace", m.Namespace)
	for i, p := range m.AllowedCallers {
		if err := CheckSPIFFEPattern(p); err != nil {
			v.errorf(fmt.Sprintf("ingress.mesh.allowedCallers[%d]", i), "%v", err)
		}
	}
}
