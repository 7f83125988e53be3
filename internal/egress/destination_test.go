package egress

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/testkit"
)

// docs parses YAML documents as the policy loader does, as if read from
// egress.yaml in a directory that holds a CA (ca.pem) and a client
// certificate (client.pem, key.pem) for relative paths to name.
func docs(t *testing.T, src string) []config.Document {
	t.Helper()
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	ca.WriteRoot(t, dir, "ca.pem")
	testkit.WriteCert(t, dir, "client", ca.Issue(t, "client.example"))
	os.Rename(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.pem"))
	os.Rename(filepath.Join(dir, "client.key"), filepath.Join(dir, "key.pem"))
	return parseDocs(t, filepath.Join(dir, "egress.yaml"), src)
}

// parseDocs parses src as the documents of file.
func parseDocs(t *testing.T, file, src string) []config.Document {
	t.Helper()
	nodes, err := config.ParseDocuments(file, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var out []config.Document
	for _, n := range nodes {
		d, err := config.DocumentOf(file, n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// Istio's TLS-origination example as its docs write it: port 80 is plain
// HTTP from the workload, originated to 443; port 443 passes through.
const istioOrigination = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: edition-cnn-com, namespace: egress}
spec:
  hosts: [edition.cnn.com]
  ports:
  - {number: 80, name: http-port, protocol: HTTP, targetPort: 443}
  - {number: 443, name: https-port, protocol: HTTPS}
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: edition-cnn-com, namespace: egress}
spec:
  host: edition.cnn.com
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: SIMPLE}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: wildcard}
spec:
  hosts: ["*.Example.COM", "api.example.com."]
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 8080, name: http, protocol: HTTP}]
  resolution: NONE
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, clientCertificate: client.pem, privateKey: key.pem, caCertificates: ca.pem, sni: api.example.com}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wild-origination}
spec:
  host: "*.example.com"
  trafficPolicy: {tls: {mode: SIMPLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: not-ours}
spec: {}
`

func TestLoadDestinationsAsIstioWritesThem(t *testing.T) {
	r, err := LoadDestinations(docs(t, istioOrigination))
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 3 {
		t.Fatalf("%d destinations, want 3", r.Len())
	}
	tests := []struct {
		host       string
		port       int
		wantFound  bool
		wantHost   string // the destination's pattern
		wantMode   Mode
		wantTarget int
		wantClient bool // a client certificate is presented
	}{
		{host: "edition.cnn.com", port: 80, wantFound: true, wantHost: "edition.cnn.com", wantMode: ModeOriginate, wantTarget: 443},
		{host: "edition.cnn.com", port: 443, wantFound: true, wantHost: "edition.cnn.com", wantMode: ModePassthrough, wantTarget: 443},
		{host: "edition.cnn.com", port: 8443, wantHost: "edition.cnn.com"},
		{host: "api.example.com", port: 8080, wantFound: true, wantHost: "api.example.com", wantMode: ModeMutual, wantTarget: 8080, wantClient: true},
		// A DestinationRule for all ports makes no TLS port originate: the
		// workload's own TLS passes through.
		{host: "api.example.com", port: 443, wantFound: true, wantHost: "api.example.com", wantMode: ModePassthrough, wantTarget: 443},
		{host: "www.example.com", port: 8080, wantFound: true, wantHost: "*.example.com", wantMode: ModeOriginate, wantTarget: 8080},
		{host: "a.b.example.com", port: 443, wantFound: true, wantHost: "*.example.com", wantMode: ModePassthrough, wantTarget: 443},
		// The wildcard never matches the bare suffix, nor a name that merely
		// ends with its letters.
		{host: "example.com", port: 443},
		{host: "evilexample.com", port: 443},
		{host: "cnn.com", port: 80},
	}
	for _, tc := range tests {
		d, p, ok := r.Lookup(tc.host, tc.port)
		if ok != tc.wantFound {
			t.Errorf("Lookup(%s, %d) found %v, want %v", tc.host, tc.port, ok, tc.wantFound)
			continue
		}
		if got := ""; d != nil {
			got = d.Host
			if got != tc.wantHost {
				t.Errorf("Lookup(%s, %d) = %s, want %s", tc.host, tc.port, got, tc.wantHost)
			}
		} else if tc.wantHost != "" {
			t.Errorf("Lookup(%s, %d): no destination, want %s", tc.host, tc.port, tc.wantHost)
		}
		if !ok {
			continue
		}
		if p.Mode != tc.wantMode || p.Target != tc.wantTarget || (p.TLS != nil && p.TLS.ClientCertificate != "") != tc.wantClient {
			t.Errorf("Lookup(%s, %d) port %+v (tls %+v), want mode %v target %d client %v", tc.host, tc.port, *p, p.TLS, tc.wantMode, tc.wantTarget, tc.wantClient)
		}
		if d.Ref == "" || d.Pos.Line == 0 {
			t.Errorf("Lookup(%s, %d): destination without its origin: %+v", tc.host, tc.port, d)
		}
	}
}

// What Tollgate can't honour is refused with its position, never ignored:
// each case is one document set and the errors it must produce.
func TestLoadDestinationsRefuses(t *testing.T) {
	se := func(spec string) string {
		return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n" + spec
	}
	dr := func(spec string) string {
		return "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\nspec:\n" + spec
	}
	ok := "  hosts: [api.example.com]\n  ports: [{number: 443, protocol: TLS}]\n  resolution: DNS\n  location: MESH_EXTERNAL\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{name: "plain HTTP out", src: se("  hosts: [api.example.com]\n  ports: [{number: 80, protocol: HTTP}]\n  resolution: DNS\n  location: MESH_EXTERNAL\n"),
			want: []string{`egress.yaml:6:11: spec.ports[0]: port 80 is plain HTTP with no TLS origination`}},
		{name: "mesh internal", src: se(strings.Replace(ok, "MESH_EXTERNAL", "MESH_INTERNAL", 1)),
			want: []string{`spec.location: want MESH_EXTERNAL (got "MESH_INTERNAL")`}},
		{name: "static endpoints", src: se(strings.Replace(ok, "resolution: DNS", "resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n  addresses: [10.0.0.0/8]", 1)),
			want: []string{"spec.addresses: not supported", "spec.endpoints: not supported", "spec.resolution: STATIC is not supported"}},
		{name: "IP and single-label hosts", src: se(strings.Replace(ok, "[api.example.com]", "[192.0.2.1, localhost, \"api.*.com\"]", 1)),
			want: []string{"spec.hosts[0]: host \"192.0.2.1\" is an IP address", "spec.hosts[1]: host \"localhost\" is a single label", "spec.hosts[2]: invalid host"}},
		{name: "unknown field", src: se(ok + "  hostz: [x]\n"),
			want: []string{`spec.hostz: unknown field (did you mean "hosts"?)`}},
		{name: "wrong apiVersion", src: strings.Replace(se(ok), "networking.istio.io/v1", "networking.istio.io/v2", 1),
			want: []string{`apiVersion: unsupported apiVersion for ServiceEntry`}},
		{name: "rule without entry", src: se(ok) + dr("  host: other.example.com\n  trafficPolicy: {tls: {mode: SIMPLE}}\n"),
			want: []string{`spec.host: no ServiceEntry declares host "other.example.com"`}},
		{name: "insecure and credentialName", src: se(strings.Replace(ok, "protocol: TLS", "protocol: HTTP", 1)) + dr("  host: api.example.com\n  trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true, credentialName: k8s-secret}}\n"),
			want: []string{"spec.trafficPolicy.tls.credentialName: not supported", "spec.trafficPolicy.tls.insecureSkipVerify: not supported"}},
		{name: "mutual without files", src: se(strings.Replace(ok, "protocol: TLS", "protocol: HTTP", 1)) + dr("  host: api.example.com\n  trafficPolicy: {tls: {mode: MUTUAL}}\n"),
			want: []string{"spec.trafficPolicy.tls.clientCertificate: required with mode MUTUAL", "spec.trafficPolicy.tls.privateKey: required with mode MUTUAL"}},
		{name: "istio mutual", src: se(ok) + dr("  host: api.example.com\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n"),
			want: []string{"ISTIO_MUTUAL is mesh-internal"}},
		{name: "origination on a TLS port", src: se(ok) + dr("  host: api.example.com\n  trafficPolicy: {portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]}\n"),
			want: []string{`spec.ports[0].protocol: TLS origination needs protocol HTTP`}},
		{name: "a host declared twice", src: se(ok) + "---\n" + strings.Replace(se(ok), "name: se", "name: se2", 1),
			want: []string{`host "api.example.com" is already declared by default/se`}},
		{name: "subsets", src: se(ok) + dr("  host: api.example.com\n  subsets: [{name: v1}]\n"),
			want: []string{"spec.subsets: not supported"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadDestinations(docs(t, tc.src))
			if err == nil {
				t.Fatalf("loaded; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if _, ok := config.AsErrors(err); !ok {
				t.Errorf("not positioned config errors: %T", err)
			}
		})
	}
}

// The most specific pattern wins: an exact host over any wildcard, a longer
// suffix over a shorter one, whatever the order they were declared in.
func TestRegistryMostSpecificWins(t *testing.T) {
	mk := func(host string) *Destination {
		return &Destination{Host: host, Ports: []Port{{Number: 443, Target: 443, Mode: ModePassthrough}}, Ref: host}
	}
	r, err := NewRegistry([]*Destination{mk("*.example.com"), mk("*.api.example.com"), mk("v1.api.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"v1.api.example.com": "v1.api.example.com",
		"v2.api.example.com": "*.api.example.com",
		"api.example.com":    "*.example.com",
		"x.y.example.com":    "*.example.com",
	} {
		if d, _, ok := r.Lookup(host, 443); !ok || d.Host != want {
			t.Errorf("Lookup(%s) = %v, want %s", host, d, want)
		}
	}
	var nilRegistry *Registry
	if _, _, ok := nilRegistry.Lookup("api.example.com", 443); ok || nilRegistry.Len() != 0 {
		t.Error("an empty registry found a destination")
	}
}
