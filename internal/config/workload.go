package config

import (
	"fmt"
	"regexp"
)

// Workload is what decides which policy documents (AuthorizationPolicy,
// RequestAuthentication) apply to a listener, as a pod's namespace and labels
// decide in Istio.
type Workload struct {
	// Namespace is the listener's Istio namespace; "" considers the documents of
	// every namespace (a gateway fed only its own policies needs no namespace).
	Namespace string
	// Labels are matched by documents' spec.selector.matchLabels.
	Labels map[string]string
}

// Selects reports whether a document in namespace ns whose selector is sel (nil:
// no selector) applies to w, root being the mesh's root namespace. As in Istio, a
// root-namespace document applies in every namespace and any other document only
// in its own; a selector then applies where all its labels match, in the root
// namespace too.
func (w Workload) Selects(root, ns string, sel map[string]string) bool {
	if w.Namespace != "" && ns != root && ns != w.Namespace {
		return false
	}
	for k, v := range sel {
		if got, ok := w.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// namespaceRE is a Kubernetes namespace name: an RFC 1123 label.
var namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// CheckNamespace reports whether ns is a Kubernetes namespace name (an RFC 1123
// label), as every namespace in policy documents and listeners must be: one
// that is not could never equal a listener's, so a document naming it would
// silently apply nowhere.
func CheckNamespace(ns string) error {
	if len(ns) > 63 || !namespaceRE.MatchString(ns) {
		return fmt.Errorf("want a namespace name: lower-case letters, digits and '-', at most 63 (got %q)", ns)
	}
	return nil
}

// namespace checks an optional namespace name at path.
func (v *validator) namespace(path, ns string) {
	if ns == "" {
		return
	}
	if err := CheckNamespace(ns); err != nil {
		v.errorf(path, "%v", err)
	}
}
