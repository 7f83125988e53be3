// Package deploycheck reads Tollgate's Kubernetes manifests (deploy/kubernetes, and the
// Helm chart as `helm template` renders it) into the Kubernetes API's own Go types, strictly:
// an unknown or misspelled field, a repeated key, a value of the wrong type or a kind no API
// group defines is an error, as the API server's field validation would make it. [Check] then
// holds the objects to what the gateway needs of them: selectors that select the pods, probes
// on the admin port, the admin port kept private, ConfigMaps mounted whole (never subPath), a
// pod that meets the restricted Pod Security Standard.
//
// It lives in its own module (tools/deploycheck) so that the product's go.mod carries no
// Kubernetes or Helm dependency; the same module pins the helm that scripts/deploy/check.sh
// builds (tool helm.sh/helm/v4/cmd/helm).
package deploycheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Scheme knows every kind the manifests may hold: the Kubernetes API (client-go's
// scheme: core, apps, policy, autoscaling, networking, ...) and the Prometheus
// Operator's monitoring.coreos.com/v1 (ServiceMonitor).
var Scheme = newScheme()

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(monitoringv1.AddToScheme(s))
	return s
}

// strict decodes YAML or JSON into the registered versioned type, without
// defaulting or conversion, and fails on unknown and duplicate fields.
var strict = serializer.NewCodecFactory(Scheme, serializer.EnableStrict).UniversalDeserializer()

// Object is one decoded document and where it came from.
type Object struct {
	// Source names the document: "file.yaml#2" (the second document of the
	// file), and for helm output the template it came from.
	Source string
	runtime.Object
}

// Decode splits data into YAML documents and decodes each strictly into its
// Kubernetes type. Documents holding nothing (only comments) are skipped. Every
// document's error is returned, joined; the objects that did decode are returned
// too.
func Decode(source string, data []byte) ([]Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []Object
	var errs []error
	for i := 1; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return objs, fmt.Errorf("%s: %w", source, err)
		}
		name := fmt.Sprintf("%s#%d", source, i)
		if t := helmSource(doc); t != "" {
			name += " (" + t + ")"
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "" {
			continue
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		objs = append(objs, Object{Source: name, Object: obj})
	}
	return objs, errors.Join(errs...)
}

// helmSource returns the template named by helm template's "# Source:" line.
func helmSource(doc []byte) string {
	for line := range strings.SplitSeq(string(doc), "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), "# Source: "); ok {
			return t
		}
	}
	return ""
}
