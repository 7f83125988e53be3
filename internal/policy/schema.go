package policy

import "tollgate.dev/tollgate/internal/config"

// API versions and the kind this package owns.
const (
	KindAuthorizationPolicy = "AuthorizationPolicy"
	APIVersionIstioV1       = "security.istio.io/v1"
	APIVersionIstioV1beta1  = "security.istio.io/v1beta1"
	// APIVersionTollgateV1 is Istio's schema plus Tollgate's extensions.
	APIVersionTollgateV1 = "tollgate.dev/v1"
)

// DryRunAnnotation marks a policy that is evaluated and recorded but not enforced.
const DryRunAnnotation = "istio.io/dry-run"

// Owns reports whether doc is a kind this package compiles. Compile ignores every
// other document, so a caller can check that each document was claimed by some
// loader.
func Owns(doc config.Document) bool {
	return doc.Kind == KindAuthorizationPolicy
}

// apDoc is an AuthorizationPolicy as Kubernetes serves it. Fields of
// ObjectMeta that do not affect authorization are accepted and ignored, so that
// `kubectl get -o yaml` output loads unchanged.
type apDoc struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   config.ObjectMeta `yaml:"metadata"`
	Spec       apSpec            `yaml:"spec"`
	Status     any               `yaml:"status"`
}

type apSpec struct {
	Selector   *selectorDoc `yaml:"selector"`
	TargetRef  any          `yaml:"targetRef"`
	TargetRefs any          `yaml:"targetRefs"`
	Action     string       `yaml:"action"`
	Provider   *providerDoc `yaml:"provider"`
	Rules      []ruleDoc    `yaml:"rules"`
}

type selectorDoc struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type providerDoc struct {
	Name string `yaml:"name"`
}

type ruleDoc struct {
	From []fromDoc      `yaml:"from"`
	To   []toDoc        `yaml:"to"`
	When []conditionDoc `yaml:"when"`
}

type fromDoc struct {
	Source *sourceDoc `yaml:"source"`
}

type toDoc struct {
	Operation *operationDoc `yaml:"operation"`
}

type sourceDoc struct {
	Principals           []string `yaml:"principals"`
	NotPrincipals        []string `yaml:"notPrincipals"`
	RequestPrincipals    []string `yaml:"requestPrincipals"`
	NotRequestPrincipals []string `yaml:"notRequestPrincipals"`
	Namespaces           []string `yaml:"namespaces"`
	NotNamespaces        []string `yaml:"notNamespaces"`
	IPBlocks             []string `yaml:"ipBlocks"`
	NotIPBlocks          []string `yaml:"notIpBlocks"`
	RemoteIPBlocks       []string `yaml:"remoteIpBlocks"`
	NotRemoteIPBlocks    []string `yaml:"notRemoteIpBlocks"`
	ServiceAccounts      []string `yaml:"serviceAccounts"`
	NotServiceAccounts   []string `yaml:"notServiceAccounts"`
	TrustDomains         []string `yaml:"trustDomains"`
	NotTrustDomains      []string `yaml:"notTrustDomains"`
}

type operationDoc struct {
	Hosts      []string `yaml:"hosts"`
	NotHosts   []string `yaml:"notHosts"`
	Ports      []string `yaml:"ports"`
	NotPorts   []string `yaml:"notPorts"`
	Methods    []string `yaml:"methods"`
	NotMethods []string `yaml:"notMethods"`
	Paths      []string `yaml:"paths"`
	NotPaths   []string `yaml:"notPaths"`
	// Tollgate extensions (tollgate.dev/v1 only).
	PathRegex    []string `yaml:"pathRegex"`
	NotPathRegex []string `yaml:"notPathRegex"`
}

type conditionDoc struct {
	Key       string   `yaml:"key"`
	Values    []string `yaml:"values"`
	NotValues []string `yaml:"notValues"`
}
