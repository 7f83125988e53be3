package deploycheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Environment of the tests, set by scripts/deploy/check.sh.
const (
	// envRendered names a folder of `helm template` outputs, one file per values set.
	envRendered = "TOLLGATE_DEPLOY_RENDERED"
	// envRequire makes a missing tool (systemd-analyze) or rendering fail the test
	// instead of skipping it.
	envRequire = "TOLLGATE_REQUIRE_DEPLOY"
)

// root is the repository's top folder (this module is tools/deploycheck).
const root = "../.."

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(envRequire) != "" {
		t.Fatalf(format+" (and "+envRequire+" is set)", args...)
	}
	t.Skipf(format, args...)
}

// readDir decodes every *.yaml file of dir strictly.
func readDir(t *testing.T, dir string) []Object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.yaml in %s", dir)
	}
	var objs []Object
	for _, f := range files {
		objs = append(objs, readFile(t, f)...)
	}
	return objs
}

func readFile(t *testing.T, file string) []Object {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(filepath.Base(file), data)
	if err != nil {
		t.Error(err)
	}
	return objs
}

func checkSet(t *testing.T, objs []Object) *Set {
	t.Helper()
	s := NewSet(objs)
	for _, err := range Check(s) {
		t.Error(err)
	}
	for _, o := range s.Other {
		t.Errorf("%s: %s is not a kind these manifests should hold", o.Source, o.GetObjectKind().GroupVersionKind())
	}
	return s
}

// wantCounts compares how many objects of each kind the set holds.
func wantCounts(t *testing.T, s *Set, want map[string]int) {
	t.Helper()
	got := map[string]int{
		"Namespace": len(s.Namespaces), "ServiceAccount": len(s.ServiceAccounts), "ConfigMap": len(s.ConfigMaps),
		"Deployment": len(s.Deployments), "Service": len(s.Services), "PodDisruptionBudget": len(s.PDBs),
		"HorizontalPodAutoscaler": len(s.HPAs), "NetworkPolicy": len(s.NetworkPolicies), "ServiceMonitor": len(s.ServiceMonitors),
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%d %s objects, want %d", got[k], k, n)
		}
	}
}

// TestPlainManifests: every file of deploy/kubernetes decodes strictly and the
// objects hold together.
func TestPlainManifests(t *testing.T) {
	s := checkSet(t, readDir(t, filepath.Join(root, "deploy", "kubernetes")))
	wantCounts(t, s, map[string]int{
		"Namespace": 1, "ServiceAccount": 1, "ConfigMap": 2, "Deployment": 1, "Service": 2,
		"PodDisruptionBudget": 1, "HorizontalPodAutoscaler": 1, "NetworkPolicy": 1, "ServiceMonitor": 1,
	})
	if t.Failed() {
		return
	}
	if ns := s.Namespaces[0]; ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("Namespace %s does not enforce the restricted Pod Security Standard", ns.Name)
	}
	if v := spiffeVolume(s.Deployments[0]); v == nil || v.CSI == nil || v.CSI.Driver != "csi.spiffe.io" {
		t.Errorf("no csi.spiffe.io volume for the Workload API socket")
	}
}

// renderings are what scripts/deploy/check.sh renders the chart with (file name:
// what that values set must produce). A rendering of another name gets the
// general checks only.
var renderings = map[string]struct {
	counts map[string]int
	socket string // "csi" or "hostPath"
}{
	"default.yaml": {
		counts: map[string]int{"ServiceAccount": 1, "ConfigMap": 2, "Deployment": 1, "Service": 2,
			"PodDisruptionBudget": 1, "HorizontalPodAutoscaler": 1, "NetworkPolicy": 1, "ServiceMonitor": 1},
		socket: "csi",
	},
	"hostpath.yaml": {
		counts: map[string]int{"ServiceAccount": 1, "ConfigMap": 2, "Deployment": 1, "Service": 2,
			"PodDisruptionBudget": 1, "HorizontalPodAutoscaler": 0, "NetworkPolicy": 1, "ServiceMonitor": 0},
		socket: "hostPath",
	},
}

// TestRenderedChart: every object of every rendering of the chart decodes
// strictly and the objects hold together.
func TestRenderedChart(t *testing.T) {
	dir := os.Getenv(envRendered)
	if dir == "" {
		skipOrFail(t, "%s not set: scripts/deploy/check.sh renders the chart and sets it", envRendered)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no renderings in %s (%v)", dir, err)
	}
	for name := range renderings {
		if !slices.Contains(files, filepath.Join(dir, name)) {
			t.Errorf("rendering %s missing from %s", name, dir)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// A misspelled field in a template fails the rendering's decoding.
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			const field = "readOnlyRootFilesystem: true"
			if !strings.Contains(string(data), field) {
				t.Fatalf("rendering has no %q", field)
			}
			if _, err := Decode(f, []byte(strings.Replace(string(data), field, "readOnlyRootFilesytem: true", 1))); err == nil ||
				!strings.Contains(err.Error(), `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFilesytem"`) {
				t.Errorf("a misspelled field in the rendering: decoding error %v", err)
			}
			s := checkSet(t, readFile(t, f))
			want, ok := renderings[filepath.Base(f)]
			if !ok || len(s.Deployments) != 1 {
				return
			}
			wantCounts(t, s, want.counts)
			v := spiffeVolume(s.Deployments[0])
			switch {
			case v == nil:
				t.Errorf("no volume for the Workload API socket")
			case want.socket == "csi" && (v.CSI == nil || v.CSI.Driver != "csi.spiffe.io"):
				t.Errorf("Workload API volume %s is not the csi.spiffe.io driver's", v.Name)
			case want.socket == "hostPath" && v.HostPath == nil:
				t.Errorf("Workload API volume %s is not a hostPath", v.Name)
			}
		})
	}
}

func spiffeVolume(d *appsv1.Deployment) *corev1.Volume {
	for i, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "spiffe-workload-api" {
			return &d.Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

// TestDecodeRefusesMistakes: the decoder is strict. Each case edits a real file of
// deploy/kubernetes (the edit must apply) and must fail to decode.
func TestDecodeRefusesMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, file, old, new string
		want                 string // in the error
	}{
		{"misspelled field deep in the pod spec", "30-deployment.yaml",
			"readOnlyRootFilesystem: true", "readOnlyRootFilesytem: true", `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFilesytem"`},
		{"field in the wrong case", "30-deployment.yaml",
			"runAsNonRoot: true\n        runAsUser", "RunAsNonRoot: true\n        runAsUser", `unknown field "spec.template.spec.securityContext.RunAsNonRoot"`},
		{"misspelled field of a ServiceMonitor", "70-servicemonitor.yaml",
			"path: /metrics", "pth: /metrics", `unknown field "spec.endpoints[0].pth"`},
		{"misspelled top-level field", "50-pdb.yaml",
			"\nspec:\n", "\nspce:\n", `unknown field "spce"`},
		{"repeated key", "40-service.yaml",
			"  name: tollgate\n  namespace: tollgate\n", "  name: tollgate\n  name: tollgate\n  namespace: tollgate\n", `key "name" already set in map`},
		{"wrong type", "50-hpa.yaml",
			"maxReplicas: 10", "maxReplicas: ten", `maxReplicas`},
		{"unknown API version", "50-hpa.yaml",
			"apiVersion: autoscaling/v2", "apiVersion: autoscaling/v3", `no kind "HorizontalPodAutoscaler" is registered for version "autoscaling/v3"`},
		{"misspelled field in the second document of a file", "20-configmap.yaml",
			"  name: tollgate-policies\n", "  name: tollgate-policies\n  namespce: tollgate\n", `unknown field "metadata.namespce"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(tc.file, data); err != nil {
				t.Fatalf("the file as it is does not decode: %v", err)
			}
			src := string(data)
			if !strings.Contains(src, tc.old) {
				t.Fatalf("%s does not contain %q: update the test", tc.file, tc.old)
			}
			_, err = Decode(tc.file, []byte(strings.Replace(src, tc.old, tc.new, 1)))
			if err == nil {
				t.Fatalf("decoded without error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestCheckCatchesMistakes: each change to the decoded plain manifests must be
// reported by Check.
func TestCheckCatchesMistakes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(s *Set)
		want   string
	}{
		{"ConfigMap mounted with subPath", func(s *Set) {
			m := &s.Deployments[0].Spec.Template.Spec.Containers[0].VolumeMounts[0]
			m.MountPath += "/gateway.yaml"
			m.SubPath = "gateway.yaml"
		}, "uses subPath"},
		{"admin port on the cluster IP Service", func(s *Set) {
			svc := service(s, "tollgate")
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "admin", Port: 9901, TargetPort: intstr.FromString("admin")})
		}, "exposes the admin port"},
		{"admin port open to everyone", func(s *Set) {
			np := s.NetworkPolicies[0]
			np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, networkingv1.NetworkPolicyPort{Port: ptr(intstr.FromInt32(9901))})
		}, "admits the admin port 9901 from anywhere"},
		{"traffic port not admitted", func(s *Set) {
			s.NetworkPolicies[0].Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromInt32(8080))
		}, "admits no traffic to port https"},
		{"capabilities kept", func(s *Set) {
			s.Deployments[0].Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Drop = nil
		}, "capabilities must drop ALL"},
		{"writable root file system", func(s *Set) {
			s.Deployments[0].Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr(false)
		}, "readOnlyRootFilesystem must be true"},
		{"no seccomp profile", func(s *Set) {
			s.Deployments[0].Spec.Template.Spec.SecurityContext.SeccompProfile = nil
		}, "seccompProfile must be RuntimeDefault"},
		{"readiness on the wrong path", func(s *Set) {
			s.Deployments[0].Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/ready"
		}, "readinessProbe asks /ready"},
		{"liveness on the traffic port", func(s *Set) {
			s.Deployments[0].Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Port = intstr.FromString("https")
		}, "livenessProbe on port https, not the admin port"},
		{"replicas beside an autoscaler", func(s *Set) {
			s.Deployments[0].Spec.Replicas = ptr(int32(3))
		}, "sets replicas while a HorizontalPodAutoscaler owns the count"},
		{"Service selecting nothing", func(s *Set) {
			service(s, "tollgate").Spec.Selector["app.kubernetes.io/name"] = "tolgate"
		}, "does not select the Deployment's pods"},
		{"ServiceMonitor scraping the traffic Service", func(s *Set) {
			delete(s.ServiceMonitors[0].Spec.Selector.MatchLabels, "tollgate.dev/service")
		}, "selects 2 Services"},
		{"no memory limit", func(s *Set) {
			delete(s.Deployments[0].Spec.Template.Spec.Containers[0].Resources.Limits, corev1.ResourceMemory)
		}, "no memory limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSet(readDir(t, filepath.Join(root, "deploy", "kubernetes")))
			if errs := Check(s); len(errs) > 0 {
				t.Fatalf("the manifests as they are fail: %v", errs)
			}
			tc.change(s)
			errs := Check(s)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("no error containing %q; got %v", tc.want, errs)
			}
		})
	}
}

func service(s *Set, name string) *corev1.Service {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc
		}
	}
	panic("no Service " + name)
}

func ptr[T any](v T) *T { return &v }
