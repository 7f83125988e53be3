package oidc

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"tollgate.dev/tollgate/internal/config"
)

// API versions of the RequestAuthentication documents this package owns.
const (
	istioV1        = "security.istio.io/v1"
	istioV1beta1   = "security.istio.io/v1beta1"
	tollgateV1     = "tollgate.dev/v1"
	kindRequestAut = "RequestAuthentication"
)

// OwnsDocument reports whether CompileRequestAuthn takes the document: kind
// RequestAuthentication in security.istio.io/v1 or v1beta1, or the Tollgate
// extension tollgate.dev/v1. The caller reports documents nobody owns.
func OwnsDocument(d config.Document) bool {
	if d.Kind != kindRequestAut {
		return false
	}
	switch d.APIVersion {
	case istioV1, istioV1beta1, tollgateV1:
		return true
	}
	return false
}

// requestAuthDoc is a RequestAuthentication document; R is istioJWTRule for
// Istio's apiVersions and tollgateJWTRule for the extension, so that Istio
// documents reject the extension's fields.
type requestAuthDoc[R any] struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   config.ObjectMeta `yaml:"metadata"`
	Spec       struct {
		Selector *struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		TargetRef  any `yaml:"targetRef"`
		TargetRefs any `yaml:"targetRefs"`
		JWTRules   []R `yaml:"jwtRules"`
	} `yaml:"spec"`
	Status any `yaml:"status"`
}

// istioJWTRule is Istio's JWTRule, field for field.
type istioJWTRule struct {
	Issuer                string          `yaml:"issuer"`
	Audiences             []string        `yaml:"audiences"`
	JwksURI               string          `yaml:"jwksUri"`
	Jwks                  string          `yaml:"jwks"`
	FromHeaders           []jwtHeader     `yaml:"fromHeaders"`
	FromParams            []string        `yaml:"fromParams"`
	FromCookies           []string        `yaml:"fromCookies"`
	OutputPayloadToHeader string          `yaml:"outputPayloadToHeader"`
	ForwardOriginalToken  bool            `yaml:"forwardOriginalToken"`
	OutputClaimToHeaders  []claimToHeader `yaml:"outputClaimToHeaders"`
	SpaceDelimitedClaims  []string        `yaml:"spaceDelimitedClaims"`
	Timeout               time.Duration   `yaml:"timeout"`
}

type jwtHeader struct {
	Name   string `yaml:"name"`
	Prefix string `yaml:"prefix"`
}

type claimToHeader struct {
	Header string `yaml:"header"`
	Claim  string `yaml:"claim"`
}

// tollgateJWTRule is the Tollgate extension: an Istio JWTRule plus settings
// Istio has no word for.
type tollgateJWTRule struct {
	istioJWTRule `yaml:",inline"`
	// Algorithms is the allow-list of JOSE algs for this issuer (default: the
	// asymmetric families). HS* must be listed explicitly and needs oct keys.
	Algorithms []string `yaml:"algorithms"`
	// ClockSkew is the leeway for exp and nbf (default 60s, at most 5m).
	ClockSkew *time.Duration `yaml:"clockSkew"`
	// MaxTokenBytes bounds the token (default 16384).
	MaxTokenBytes int `yaml:"maxTokenBytes"`
}

const (
	defaultJWKSTimeout = 5 * time.Second
	maxClockSkew       = 5 * time.Minute
	maxJWKSTimeout     = time.Minute
	maxTokenBytesLimit = 1 << 20
)

// headerNameRE is Istio's validation for outputClaimToHeaders header names.
var headerNameRE = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

// ruleSpec is one JWTRule after decoding, with where it came from.
type ruleSpec struct {
	istioJWTRule
	algorithms    []string
	clockSkew     time.Duration
	maxTokenBytes int
	// selector nil means every listener.
	selector map[string]string
	// namespace is metadata.namespace ("default" when absent, as in Istio).
	namespace string
	source    string // "file:line: RequestAuthentication namespace/name spec.jwtRules[i]" for logs
	path      string
}

// decodeRequestAuth decodes and validates one document, reporting problems to d.
func decodeRequestAuth(doc config.Document, d *config.Decoder) []ruleSpec {
	ext := doc.APIVersion == tollgateV1
	var ra requestAuthDoc[istioJWTRule]
	var extRules []tollgateJWTRule
	if ext {
		var xa requestAuthDoc[tollgateJWTRule]
		d.Decode(doc.Node, "", &xa)
		ra.Metadata, ra.Spec.Selector = xa.Metadata, xa.Spec.Selector
		ra.Spec.TargetRef, ra.Spec.TargetRefs = xa.Spec.TargetRef, xa.Spec.TargetRefs
		extRules = xa.Spec.JWTRules
		for _, r := range extRules {
			ra.Spec.JWTRules = append(ra.Spec.JWTRules, r.istioJWTRule)
		}
	} else {
		d.Decode(doc.Node, "", &ra)
	}
	istioRules := ra.Spec.JWTRules
	if ra.Spec.TargetRef != nil || ra.Spec.TargetRefs != nil {
		// Applying a targeted document to every listener would widen it, so it is
		// refused rather than ignored.
		d.Errorf("spec.targetRef", "targetRef/targetRefs are not supported by Tollgate (use spec.selector.matchLabels with listener labels)")
	}
	var sel map[string]string
	if ra.Spec.Selector != nil && len(ra.Spec.Selector.MatchLabels) > 0 {
		sel = ra.Spec.Selector.MatchLabels
	}
	for k := range sel {
		if k == "" {
			d.Errorf("spec.selector.matchLabels", "empty label name")
		}
	}
	name := ra.Metadata.Name
	if ra.Metadata.Namespace != "" {
		name = ra.Metadata.Namespace + "/" + name
		if err := config.CheckNamespace(ra.Metadata.Namespace); err != nil {
			d.Errorf("metadata.namespace", "%v", err)
		}
	}
	var specs []ruleSpec
	for i, r := range istioRules {
		path := fmt.Sprintf("spec.jwtRules[%d]", i)
		pos := d.Pos(path)
		s := ruleSpec{
			istioJWTRule:  r,
			algorithms:    defaultAlgorithms,
			clockSkew:     defaultClockSkew,
			maxTokenBytes: defaultMaxTokenBytes,
			selector:      sel,
			namespace:     cmp.Or(ra.Metadata.Namespace, "default"),
			source:        fmt.Sprintf("%s:%d: RequestAuthentication %s %s", doc.File, pos.Line, name, path),
			path:          path,
		}
		if ext {
			validateExtension(d, path, extRules[i], &s)
		}
		validateRule(d, path, &s)
		specs = append(specs, s)
	}
	return specs
}

func validateRule(d *config.Decoder, path string, r *ruleSpec) {
	if r.Issuer == "" && r.JwksURI == "" {
		d.Errorf(path, "one of issuer or jwksUri is required")
	}
	if r.JwksURI != "" && r.Jwks != "" {
		d.Errorf(path+".jwks", "jwks and jwksUri are mutually exclusive")
	}
	if r.JwksURI != "" {
		if err := checkHTTPURL(r.JwksURI); err != nil {
			d.Errorf(path+".jwksUri", "%v (got %q)", err, r.JwksURI)
		}
	}
	if r.JwksURI == "" && r.Jwks == "" && r.Issuer != "" {
		// Keys come from OIDC discovery at <issuer>/.well-known/openid-configuration.
		if err := checkHTTPURL(r.Issuer); err != nil {
			d.Errorf(path+".issuer", "without jwksUri or jwks, keys come from OIDC discovery and the issuer must be an http(s) URL (got %q)", r.Issuer)
		}
	}
	if r.Jwks != "" {
		if _, err := parseJWKS([]byte(r.Jwks)); err != nil {
			d.Errorf(path+".jwks", "invalid JWKS: %v", err)
		}
	}
	for i, a := range r.Audiences {
		if a == "" {
			d.Errorf(fmt.Sprintf("%s.audiences[%d]", path, i), "empty audience")
		}
	}
	for i, h := range r.FromHeaders {
		p := fmt.Sprintf("%s.fromHeaders[%d]", path, i)
		if h.Name == "" {
			d.Errorf(p+".name", "header name is required")
		} else if !headerNameRE.MatchString(h.Name) {
			d.Errorf(p+".name", "invalid header name (got %q, want ^[-_A-Za-z0-9]+$)", h.Name)
		}
	}
	for i, name := range r.FromParams {
		if name == "" {
			d.Errorf(fmt.Sprintf("%s.fromParams[%d]", path, i), "empty parameter name")
		}
	}
	for i, name := range r.FromCookies {
		if name == "" || strings.ContainsAny(name, "=; \t\r\n") {
			d.Errorf(fmt.Sprintf("%s.fromCookies[%d]", path, i), "invalid cookie name (got %q)", name)
		}
	}
	if h := r.OutputPayloadToHeader; h != "" && !headerNameRE.MatchString(h) {
		d.Errorf(path+".outputPayloadToHeader", "invalid header name (got %q, want ^[-_A-Za-z0-9]+$)", h)
	}
	seen := map[string]bool{}
	for i, c := range r.OutputClaimToHeaders {
		p := fmt.Sprintf("%s.outputClaimToHeaders[%d]", path, i)
		switch {
		case c.Header == "":
			d.Errorf(p+".header", "header is required")
		case !headerNameRE.MatchString(c.Header):
			d.Errorf(p+".header", "invalid header name (got %q, want ^[-_A-Za-z0-9]+$)", c.Header)
		case seen[strings.ToLower(c.Header)]:
			d.Errorf(p+".header", "header %q is set twice", c.Header)
		}
		seen[strings.ToLower(c.Header)] = true
		if c.Claim == "" {
			d.Errorf(p+".claim", "claim is required")
		}
	}
	for i, c := range r.SpaceDelimitedClaims {
		if c == "" {
			d.Errorf(fmt.Sprintf("%s.spaceDelimitedClaims[%d]", path, i), "empty claim name")
		}
	}
	if d.Has(path+".timeout") && (r.Timeout <= 0 || r.Timeout > maxJWKSTimeout) {
		d.Errorf(path+".timeout", "timeout must be positive and at most %s (got %s)", maxJWKSTimeout, r.Timeout)
	}
	if r.Timeout == 0 {
		r.Timeout = defaultJWKSTimeout
	}
}

func validateExtension(d *config.Decoder, path string, x tollgateJWTRule, r *ruleSpec) {
	if len(x.Algorithms) > 0 {
		r.algorithms = nil
		for i, a := range x.Algorithms {
			p := fmt.Sprintf("%s.algorithms[%d]", path, i)
			if _, ok := algorithms[a]; !ok {
				d.Errorf(p, "unsupported algorithm (got %q, want one of %s)", a, strings.Join(sortedAlgs(), ", "))
				continue
			}
			r.algorithms = append(r.algorithms, a)
		}
	} else if d.Has(path + ".algorithms") {
		d.Errorf(path+".algorithms", "empty list allows nothing; omit the field for the default")
	}
	if x.ClockSkew != nil {
		if *x.ClockSkew > maxClockSkew {
			d.Errorf(path+".clockSkew", "clock skew at most %s (got %s)", maxClockSkew, *x.ClockSkew)
		}
		r.clockSkew = *x.ClockSkew
	}
	if d.Has(path + ".maxTokenBytes") {
		if x.MaxTokenBytes < 64 || x.MaxTokenBytes > maxTokenBytesLimit {
			d.Errorf(path+".maxTokenBytes", "must be between 64 and %d (got %d)", maxTokenBytesLimit, x.MaxTokenBytes)
		}
		r.maxTokenBytes = x.MaxTokenBytes
	}
}

func sortedAlgs() []string {
	var out []string
	for a := range algorithms {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}
