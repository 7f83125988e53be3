package policycli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/policy"
	"tollgate.dev/tollgate/internal/policy/pathnorm"
)

// Settings are what a gateway configuration contributes to a decision. The zero
// Settings answer as Istio would: trust domain cluster.local, normalization BASE,
// and every policy applies whatever its selector.
type Settings struct {
	Policy policy.Options
	// Normalization is the path normalization; the zero value means Istio's
	// default (BASE, escaped slashes kept).
	Normalization pathnorm.Options
	// Labels are the listener's labels and Namespace its namespace. Nil labels
	// and no namespace apply every policy; otherwise the policies apply as they
	// would to such a listener (config.Workload.Selects).
	Labels    map[string]string
	Namespace string
	// TrustedProxies are the listener's trusted proxies, from which
	// X-Forwarded-For is believed (request.ClientIP).
	TrustedProxies []netip.Prefix
}

func (s Settings) normalization() pathnorm.Options {
	if s.Normalization == (pathnorm.Options{}) {
		return pathnorm.IstioDefault()
	}
	return s.Normalization
}

// ParseNormalization maps a --normalization flag to options: "" is Istio's
// default (BASE); the Istio mode names keep escaped slashes as Istio does,
// except DECODE_AND_MERGE_SLASHES, which decodes them.
func ParseNormalization(name string) (pathnorm.Options, error) {
	if name == "" {
		return pathnorm.IstioDefault(), nil
	}
	m, err := pathnorm.ParseMode(name)
	if err != nil {
		return pathnorm.Options{}, err
	}
	return pathnorm.Options{Mode: m, EscapedSlashes: pathnorm.EscapedSlashesKeep, PathParameters: pathnorm.PathParametersKeep}, nil
}

// LoadSet loads and compiles the policies of paths (files or directories).
// Documents of kinds the policy engine does not own are ignored.
func LoadSet(paths []string, opts policy.Options) (*policy.Set, error) {
	docs, err := config.LoadDocuments(paths)
	if err != nil {
		return nil, err
	}
	return policy.Compile(docs.Documents, docs.Version, opts)
}

func engine(set *policy.Set, s Settings) *policy.Engine {
	if s.Labels == nil && s.Namespace == "" {
		return set.EngineAllPolicies()
	}
	return set.EngineFor(config.Workload{Namespace: s.Namespace, Labels: s.Labels})
}

// Eval is `gateway policy eval`: it loads the policies, reads one JSON request
// description from in, and writes the decision record to out as JSON.
func Eval(policies []string, s Settings, in io.Reader, out io.Writer) (policy.Decision, error) {
	set, err := LoadSet(policies, s.Policy)
	if err != nil {
		return policy.Decision{}, err
	}
	desc, err := ReadDescription(in)
	if err != nil {
		return policy.Decision{}, err
	}
	req, err := desc.Request(s.normalization(), s.TrustedProxies)
	if err != nil {
		return policy.Decision{}, err
	}
	d := engine(set, s).Decide(req)
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return d, fmt.Errorf("write decision: %w", err)
	}
	return d, nil
}
