// Package deploy_test checks the gateway files of the deployment artifacts as
// `gateway check` does (config.Load, then gateway.Check), each in a file system
// laid out as the service or the pod sees it: deploy/systemd's, the ConfigMap of
// deploy/kubernetes, and the Helm chart's as `helm template` renders it
// (scripts/deploy/check.sh sets TOLLGATE_DEPLOY_RENDERED). The paths that only
// exist on a host or in a cluster (the TLS secret, the SPIRE socket, the state
// and log folders) are rewritten to files this test makes.
//
// It also holds each file to its surroundings: listen addresses a Service and
// the kubelet's probes can reach, the probes on the admin port, a termination
// grace period (or the unit's TimeoutStopSec) above the gateway's own drain,
// audit files where the service may write, and ConfigMaps read through the
// kubelet's symlinks.
//
// The strict decoding of the Kubernetes objects themselves is in
// tools/deploycheck, a module of its own: the product's go.mod carries no
// Kubernetes dependency.
package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
)

const (
	// envRendered names a folder of `helm template` outputs of the chart.
	envRendered = "TOLLGATE_DEPLOY_RENDERED"
	// envRequire makes a missing rendering fail the test instead of skipping it.
	envRequire = "TOLLGATE_REQUIRE_DEPLOY"
)

// tb is what the checks need of a test: *testing.T, or a recorder that keeps
// the failures so that a test can ask for them.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	TempDir() string
}

// recorder is a tb that records failures; Fatal and Fatalf end the check with
// a panic of errFatal.
type recorder struct {
	t    *testing.T
	msgs []string
}

var errFatal = errors.New("fatal")

func (r *recorder) Helper()         {}
func (r *recorder) TempDir() string { return r.t.TempDir() }
func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatal(args ...any) {
	r.msgs = append(r.msgs, fmt.Sprint(args...))
	panic(errFatal)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(errFatal)
}

// checkGatewayFile loads file as `gateway check -c file` does and fails the test
// with every problem, or with a warning (a policy that applies to no listener).
func checkGatewayFile(t tb, file string) *config.Gateway {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("gateway check: %v", err)
	}
	warnings, err := gateway.Check(cfg)
	if err != nil {
		t.Fatalf("gateway check: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("gateway check warns: %s", w)
	}
	return cfg
}

// rewrite returns src with every absolute path under one of prefixes moved
// under root (the longest prefix first).
func rewrite(src, root string, prefixes []string) string {
	slices.SortFunc(prefixes, func(a, b string) int { return len(b) - len(a) })
	// Placeholders first, so that a path already moved is not moved again.
	var undo []string
	for i, p := range prefixes {
		ph := fmt.Sprintf("\x00%d\x00", i)
		src = strings.ReplaceAll(src, p, ph)
		undo = append(undo, ph, root+p)
	}
	return strings.NewReplacer(undo...).Replace(src)
}

// tlsSecret makes a self-signed certificate and its key as a kubernetes.io/tls
// Secret holds them: tls.crt and tls.key.
func tlsSecret(t tb) map[string]string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "app.example.com"},
		DNSNames:     []string{"app.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"tls.crt": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"tls.key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})),
	}
}

// kubeletVolume lays data out in dir as the kubelet's atomic writer does for a
// ConfigMap or Secret volume: the files in a timestamped hidden folder, a
// "..data" symlink to it, and one symlink per key through "..data". An update
// writes a new folder and swaps "..data" in one rename; see updateVolume.
func kubeletVolume(t tb, dir string, data map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	swapData(t, dir, "..2026_01_01_00_00_00.000000001", data)
	for k := range data {
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
}

// swapData writes data into dir/ts and points dir/..data at it atomically.
func swapData(t tb, dir, ts string, data map[string]string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, ts, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// countDocuments counts the YAML documents with a kind in each value of data.
func countDocuments(t tb, data map[string]string) int {
	t.Helper()
	n := 0
	for k, v := range data {
		if !strings.HasSuffix(k, ".yaml") && !strings.HasSuffix(k, ".yml") {
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(v))
		for {
			var doc struct {
				Kind string `yaml:"kind"`
			}
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			if doc.Kind != "" {
				n++
			}
		}
	}
	return n
}

// listenPort returns the port of a listen address and whether a connection to
// the host's (or the pod's) IP reaches it: not a loopback address.
func listenPort(t tb, field, addr string) (int, bool) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", field, addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("%s %q: %v", field, addr, err)
	}
	if host == "" {
		return p, true
	}
	ip := net.ParseIP(host)
	return p, ip == nil || !ip.IsLoopback()
}

// --- systemd ---

// unitSettings reads the [Service] settings of a unit file.
func unitSettings(t tb, file string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	section := ""
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestSystemd: deploy/systemd/gateway.yaml passes `gateway check` on a host laid
// out as deploy/systemd/tollgate.service makes it, and fits the unit.
func TestSystemd(t *testing.T) {
	unit := unitSettings(t, filepath.Join("systemd", "tollgate.service"))
	one := func(k string) string {
		t.Helper()
		if len(unit[k]) != 1 {
			t.Fatalf("unit: %s set %d times, want once", k, len(unit[k]))
		}
		return unit[k][0]
	}
	args := strings.Fields(one("ExecStart"))
	i := slices.Index(args, "-c")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("unit: ExecStart %q names no -c FILE", one("ExecStart"))
	}
	if args[i+1] != "/etc/tollgate/gateway.yaml" {
		t.Fatalf("unit: ExecStart reads %s, the file docs/deploy.md installs is /etc/tollgate/gateway.yaml", args[i+1])
	}
	state := "/var/lib/" + one("StateDirectory")
	logs := "/var/log/" + one("LogsDirectory")

	root := t.TempDir()
	for _, d := range []string{"/etc/tollgate", state, logs, "/run/spire/agent-sockets"} {
		if err := os.MkdirAll(root+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range tlsSecret(t) {
		if err := os.MkdirAll(root+"/etc/tollgate/tls", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/tollgate/tls", k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.CopyFS(root+"/etc/tollgate/policies", os.DirFS("../examples/quickstart/policies")); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("systemd", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	file := root + "/etc/tollgate/gateway.yaml"
	if err := os.WriteFile(file, []byte(rewrite(string(src), root, []string{"/etc/tollgate/", state + "/", logs + "/", "/run/spire/"})), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := checkGatewayFile(t, file)

	// The unit lets the gateway drain: TimeoutStopSec above its own bound.
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("unit: TimeoutStopSec: %v", err)
	}
	if bound := cfg.ShutdownDelay + cfg.ShutdownTimeout + time.Second; stop <= bound {
		t.Errorf("unit: TimeoutStopSec %v, but the gateway may take shutdownDelay + shutdownTimeout + 1s = %v to exit", stop, bound)
	}
	// ProtectSystem=strict: the gateway writes only in its state and logs folders.
	if j := cfg.Audit.Journal; j != nil && !strings.HasPrefix(j.Dir, root+state+"/") {
		t.Errorf("audit.journal.dir %s is not under the unit's StateDirectory %s", strings.TrimPrefix(j.Dir, root), state)
	}
	for i, s := range cfg.Audit.Sinks {
		if s.File != "" && !strings.HasPrefix(s.File, root+logs+"/") {
			t.Errorf("audit.sinks[%d].file %s is not under the unit's LogsDirectory %s", i, strings.TrimPrefix(s.File, root), logs)
		}
	}
	// PrivateTmp=yes hides the host's /tmp, and the SPIRE agent's socket with it.
	if w := cfg.Identity.WorkloadAPI; w != nil {
		sock := strings.TrimPrefix(strings.TrimPrefix(w.Socket, "unix://"), root)
		if w.Socket == "" || strings.HasPrefix(sock, "/tmp/") || strings.HasPrefix(sock, "/var/tmp/") {
			t.Errorf("identity.workloadAPI.socket %q: name one outside /tmp (the unit's /tmp is private)", sock)
		}
	}
	// On a host the admin listener (no auth) stays on loopback.
	if _, open := listenPort(t, "admin.listen", cfg.Admin.Listen); open {
		t.Errorf("admin.listen %s: keep the admin listener on loopback on a host", cfg.Admin.Listen)
	}
	// No capabilities: every listener above 1023.
	addrs := map[string]string{"admin.listen": cfg.Admin.Listen}
	if cfg.Ingress != nil {
		addrs["ingress.listen"] = cfg.Ingress.Listen
	}
	if cfg.Egress != nil {
		addrs["egress.listen"] = cfg.Egress.Listen
	}
	for f, a := range addrs {
		if p, _ := listenPort(t, f, a); p < 1024 && one("CapabilityBoundingSet") == "" {
			t.Errorf("%s %s needs CAP_NET_BIND_SERVICE, which the unit does not grant", f, a)
		}
	}
}

// --- Kubernetes ---

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64      `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container `yaml:"containers"`
	Volumes                       []volume    `yaml:"volumes"`
}

type container struct {
	Name  string   `yaml:"name"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Lifecycle *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int64 `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
	CSI *struct {
		Driver string `yaml:"driver"`
	} `yaml:"csi"`
	HostPath *struct {
		Path string `yaml:"path"`
	} `yaml:"hostPath"`
	EmptyDir              *struct{} `yaml:"emptyDir"`
	PersistentVolumeClaim *struct{} `yaml:"persistentVolumeClaim"`
}

// readObjects reads every YAML document of the files.
func readObjects(t tb, files ...string) []k8sObject {
	t.Helper()
	var objs []k8sObject
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind != "" {
				objs = append(objs, o)
			}
		}
	}
	return objs
}

// checkPod builds the gateway container's file system from the objects (its
// ConfigMaps as the kubelet lays them out, a test-made certificate for the TLS
// Secret, empty folders for the SPIFFE socket and writable volumes), runs
// `gateway check` on the gateway file the container's args name, and holds the
// file to the pod.
func checkPod(t tb, objs []k8sObject) {
	var deploys []k8sObject
	configMaps := map[string]map[string]string{}
	for _, o := range objs {
		switch o.Kind {
		case "Deployment":
			deploys = append(deploys, o)
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o.Data
		}
	}
	if len(deploys) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deploys))
	}
	pod := deploys[0].Spec.Template.Spec
	i := slices.IndexFunc(pod.Containers, func(c container) bool { return c.Name == "gateway" })
	if i < 0 {
		t.Fatal("no container named gateway")
	}
	ct := pod.Containers[i]

	root := t.TempDir()
	var mounts []string
	writable := map[string]bool{} // mount paths the gateway may write in
	policyDirs := map[string]map[string]string{}
	spiffeDirs := map[string]bool{}
	for _, m := range ct.VolumeMounts {
		j := slices.IndexFunc(pod.Volumes, func(v volume) bool { return v.Name == m.Name })
		if j < 0 {
			t.Fatalf("volumeMount %s: no such volume", m.Name)
		}
		if m.SubPath != "" {
			t.Errorf("volumeMount %s: subPath %s never sees the kubelet's updates; mount the whole volume", m.Name, m.SubPath)
			continue
		}
		v := pod.Volumes[j]
		dir := root + m.MountPath
		mounts = append(mounts, m.MountPath+"/")
		switch {
		case v.ConfigMap != nil:
			data, ok := configMaps[v.ConfigMap.Name]
			if !ok {
				t.Fatalf("volume %s: ConfigMap %s is not among the objects", v.Name, v.ConfigMap.Name)
			}
			kubeletVolume(t, dir, data)
			policyDirs[m.MountPath] = data
		case v.Secret != nil:
			kubeletVolume(t, dir, tlsSecret(t))
		case v.CSI != nil || v.HostPath != nil:
			spiffeDirs[m.MountPath] = true
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		case v.EmptyDir != nil || v.PersistentVolumeClaim != nil:
			writable[m.MountPath] = true
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s: a kind this test does not know", v.Name)
		}
	}

	k := slices.Index(ct.Args, "-c")
	if k < 0 || k+1 >= len(ct.Args) {
		t.Fatalf("container args %q name no -c FILE", ct.Args)
	}
	in := root + ct.Args[k+1]
	src, err := os.ReadFile(in)
	if err != nil {
		t.Fatalf("the gateway file %s is in no mounted ConfigMap: %v", ct.Args[k+1], err)
	}
	file := filepath.Join(root, "gateway-rewritten.yaml")
	if err := os.WriteFile(file, []byte(rewrite(string(src), root, mounts)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := checkGatewayFile(t, file)

	ports := map[string]int{}
	for _, p := range ct.Ports {
		ports[p.Name] = p.ContainerPort
	}
	listen := func(field, addr, portName string) {
		t.Helper()
		p, open := listenPort(t, field, addr)
		if !open {
			t.Errorf("%s %s: a loopback address inside the pod is unreachable through a Service or by the kubelet's probes; listen on all addresses (\":%d\")", field, addr, p)
		}
		if ports[portName] != p {
			t.Errorf("%s %s: the container port named %s is %d", field, addr, portName, ports[portName])
		}
	}
	listen("admin.listen", cfg.Admin.Listen, "admin")
	if in := cfg.Ingress; in != nil {
		listen("ingress.listen", in.Listen, "https")
		if in.Mesh != nil {
			listen("ingress.mesh.listen", in.Mesh.Listen, "mesh")
		}
	}
	if e := cfg.Egress; e != nil {
		listen("egress.listen", e.Listen, "egress")
	}

	// Drain: the grace period covers the preStop sleep and the gateway's bound.
	var preStop time.Duration
	if l := ct.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	grace := 30 * time.Second // Kubernetes' default
	if g := pod.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if need := preStop + cfg.ShutdownDelay + cfg.ShutdownTimeout + time.Second; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop sleep %v + shutdownDelay %v + shutdownTimeout %v + 1s: the kubelet would kill the gateway mid-drain",
			grace, preStop, cfg.ShutdownDelay, cfg.ShutdownTimeout)
	}

	// The SVID's socket is on the SPIFFE volume.
	if w := cfg.Identity.WorkloadAPI; w != nil {
		sock := strings.TrimPrefix(strings.TrimPrefix(w.Socket, "unix://"), root)
		if !spiffeDirs[filepath.Dir(sock)] {
			t.Errorf("identity.workloadAPI.socket %s is not on a csi or hostPath volume", w.Socket)
		}
	}
	// readOnlyRootFilesystem: audit files only on writable volumes.
	under := func(p string) bool {
		p = strings.TrimPrefix(p, root)
		for m := range writable {
			if strings.HasPrefix(p, m+"/") {
				return true
			}
		}
		return false
	}
	if j := cfg.Audit.Journal; j != nil && !under(j.Dir) {
		t.Errorf("audit.journal.dir %s is on no writable volume (the root file system is read-only)", strings.TrimPrefix(j.Dir, root))
	}
	for i, s := range cfg.Audit.Sinks {
		if s.File != "" && !under(s.File) {
			t.Errorf("audit.sinks[%d].file %s is on no writable volume", i, strings.TrimPrefix(s.File, root))
		}
	}

	// Policies: read through the kubelet's symlinks, each document once (the
	// hidden "..data" folder skipped), and a swap of "..data" is seen.
	if len(cfg.Policy.Files) == 0 {
		t.Fatal("policy.files is empty")
	}
	for _, f := range cfg.Policy.Files {
		mount := strings.TrimSuffix(strings.TrimPrefix(f, root), "/")
		data, ok := policyDirs[mount]
		if !ok {
			t.Errorf("policy.files %s is not a mounted ConfigMap", strings.TrimPrefix(f, root))
			continue
		}
		set, err := config.LoadDocuments([]string{f})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(set.Documents), countDocuments(t, data); got != want {
			t.Errorf("%s: %d documents read, the ConfigMap holds %d", mount, got, want)
		}
		changed := map[string]string{}
		for k, v := range data {
			changed[k] = v + "\n# changed\n"
		}
		swapData(t, root+mount, "..2026_01_01_00_01_00.000000002", changed)
		after, err := config.LoadDocuments([]string{f})
		if err != nil {
			t.Fatal(err)
		}
		if after.Version == set.Version {
			t.Errorf("%s: a kubelet update (a new ..data) is not seen", mount)
		}
	}
}

// TestKubernetes: the gateway file of deploy/kubernetes passes `gateway check` in
// the pod that 30-deployment.yaml makes.
func TestKubernetes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests (%v)", err)
	}
	checkPod(t, readObjects(t, files...))
}

// TestHelmChart: the gateway file of every rendering of the chart passes `gateway
// check` in the pod the rendering makes.
func TestHelmChart(t *testing.T) {
	dir := os.Getenv(envRendered)
	if dir == "" {
		if os.Getenv(envRequire) != "" {
			t.Fatalf("%s not set (and %s is)", envRendered, envRequire)
		}
		t.Skipf("%s not set: scripts/deploy/check.sh renders the chart and sets it", envRendered)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no renderings in %s (%v)", dir, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { checkPod(t, readObjects(t, f)) })
	}
}

// TestCheckPodCatchesMistakes: the pod checks are not blind. Each edit of the
// plain manifests must fail them.
func TestCheckPodCatchesMistakes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"admin on loopback", "20-configmap.yaml", `listen: ":9901"`, `listen: 127.0.0.1:9901`, "unreachable through a Service"},
		{"ingress on loopback", "20-configmap.yaml", `listen: ":8443"`, `listen: 127.0.0.1:8443`, "unreachable through a Service"},
		{"misspelled gateway field", "20-configmap.yaml", "pathPrefix: /", "pathprefix: /", `unknown field (did you mean "pathPrefix"?)`},
		{"grace period too short", "30-deployment.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "the kubelet would kill the gateway mid-drain"},
		{"admin port elsewhere", "30-deployment.yaml", "containerPort: 9901", "containerPort: 9902", "the container port named admin is 9902"},
		{"gateway file in a subPath mount", "30-deployment.yaml", "mountPath: /etc/tollgate/config\n", "mountPath: /etc/tollgate/config/gateway.yaml\n          subPath: gateway.yaml\n", "never sees the kubelet's updates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			found := false
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				s := string(b)
				if filepath.Base(f) == tc.file {
					found = strings.Contains(s, tc.old)
					s = strings.Replace(s, tc.old, tc.new, 1)
				}
				if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !found {
				t.Fatalf("%s does not contain %q: update the test", tc.file, tc.old)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			rec := &recorder{t: t}
			func() {
				defer func() {
					if r := recover(); r != nil && r != errFatal {
						panic(r)
					}
				}()
				checkPod(rec, readObjects(t, files...))
			}()
			if !slices.ContainsFunc(rec.msgs, func(m string) bool { return strings.Contains(m, tc.want) }) {
				t.Errorf("no failure containing %q; got %q", tc.want, rec.msgs)
			}
		})
	}
}
