package egress

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"tollgate.dev/tollgate/internal/config"
)

// Istio's networking resources that declare the outside world: a
// ServiceEntry registers hosts and ports, a DestinationRule for the same
// host says how to speak TLS to it. They load as Istio writes them, so an
// operator moving off Istio's egress gateway copies them over unchanged;
// what Tollgate can't honour is refused with its position, never ignored.
const (
	KindServiceEntry    = "ServiceEntry"
	KindDestinationRule = "DestinationRule"
)

var networkingVersions = []string{"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}

// Owns reports whether doc is a kind this package loads.
func Owns(doc config.Document) bool {
	return doc.Kind == KindServiceEntry || doc.Kind == KindDestinationRule
}

type serviceEntryDoc struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   config.ObjectMeta `yaml:"metadata"`
	Spec       serviceEntrySpec  `yaml:"spec"`
	Status     any               `yaml:"status"`
}

type serviceEntrySpec struct {
	Hosts            []string  `yaml:"hosts"`
	Addresses        []string  `yaml:"addresses"`
	Ports            []portDoc `yaml:"ports"`
	Location         string    `yaml:"location"`
	Resolution       string    `yaml:"resolution"`
	Endpoints        any       `yaml:"endpoints"`
	WorkloadSelector any       `yaml:"workloadSelector"`
	ExportTo         []string  `yaml:"exportTo"`
	SubjectAltNames  []string  `yaml:"subjectAltNames"`
}

type portDoc struct {
	Number     int    `yaml:"number"`
	Protocol   string `yaml:"protocol"`
	Name       string `yaml:"name"`
	TargetPort int    `yaml:"targetPort"`
}

type destinationRuleDoc struct {
	APIVersion string              `yaml:"apiVersion"`
	Kind       string              `yaml:"kind"`
	Metadata   config.ObjectMeta   `yaml:"metadata"`
	Spec       destinationRuleSpec `yaml:"spec"`
	Status     any                 `yaml:"status"`
}

type destinationRuleSpec struct {
	Host             string         `yaml:"host"`
	TrafficPolicy    *trafficPolicy `yaml:"trafficPolicy"`
	Subsets          any            `yaml:"subsets"`
	ExportTo         []string       `yaml:"exportTo"`
	WorkloadSelector any            `yaml:"workloadSelector"`
}

type trafficPolicy struct {
	TLS               *tlsDoc             `yaml:"tls"`
	PortLevelSettings []portLevelSettings `yaml:"portLevelSettings"`
	// Connection pools, outlier detection and load balancing tune Envoy;
	// Tollgate's pool is its own. Accepted so resources load unchanged.
	ConnectionPool   any `yaml:"connectionPool"`
	OutlierDetection any `yaml:"outlierDetection"`
	LoadBalancer     any `yaml:"loadBalancer"`
}

type portLevelSettings struct {
	Port             portSelector `yaml:"port"`
	TLS              *tlsDoc      `yaml:"tls"`
	ConnectionPool   any          `yaml:"connectionPool"`
	OutlierDetection any          `yaml:"outlierDetection"`
	LoadBalancer     any          `yaml:"loadBalancer"`
}

type portSelector struct {
	Number int `yaml:"number"`
}

type tlsDoc struct {
	Mode               string   `yaml:"mode"`
	ClientCertificate  string   `yaml:"clientCertificate"`
	PrivateKey         string   `yaml:"privateKey"`
	CACertificates     string   `yaml:"caCertificates"`
	CredentialName     string   `yaml:"credentialName"`
	SubjectAltNames    []string `yaml:"subjectAltNames"`
	SNI                string   `yaml:"sni"`
	InsecureSkipVerify *bool    `yaml:"insecureSkipVerify"`
}

// LoadDestinations builds the registry from the ServiceEntry and
// DestinationRule documents among docs (others are ignored; see Owns).
// Every problem of every document is returned at once, positioned.
//
// A port's mode follows Istio: a DestinationRule for the host with
// tls.mode SIMPLE (MUTUAL) on that port, or for all ports when the port is
// HTTP, makes it ModeOriginate (ModeMutual); otherwise an HTTPS or TLS port
// is ModePassthrough. A plain HTTP port with no TLS origination is refused:
// Tollgate never sends a workload's request to the outside unencrypted.
func LoadDestinations(docs []config.Document) (*Registry, error) {
	var errs config.Errors
	rules := map[string]*loadedRule{}
	for _, doc := range docs {
		if doc.Kind != KindDestinationRule {
			continue
		}
		d := config.NewDecoder(doc.File)
		r := loadDestinationRule(doc, d)
		if r != nil {
			if prev, dup := rules[r.host]; dup {
				d.Errorf("spec.host", "host %q already has a DestinationRule (%s:%d)", r.host, prev.pos.File, prev.pos.Line)
			} else if len(d.Errs) == 0 {
				rules[r.host] = r
			}
		}
		errs = append(errs, d.Errs...)
	}
	var dests []*Destination
	used := map[string]bool{}
	for _, doc := range docs {
		if doc.Kind != KindServiceEntry {
			continue
		}
		d := config.NewDecoder(doc.File)
		dests = append(dests, loadServiceEntry(doc, d, rules, used)...)
		errs = append(errs, d.Errs...)
	}
	for host, r := range rules {
		if !used[host] {
			errs = append(errs, config.Error{File: r.pos.File, Line: r.pos.Line, Col: r.pos.Col, Path: "spec.host",
				Msg: fmt.Sprintf("no ServiceEntry declares host %q: a DestinationRule alone registers nothing", host)})
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return NewRegistry(dests)
}

// loadedRule is a decoded DestinationRule: TLS for all ports and per port.
type loadedRule struct {
	host    string
	all     *tlsSetting
	perPort map[int]*tlsSetting
	pos     config.Position
}

type tlsSetting struct {
	mode Mode // 0: DISABLE (no origination)
	tls  *TLS
	// config is tls made usable: files read, roots and key pair parsed.
	config *tls.Config
}

func checkVersion(d *config.Decoder, kind, got string) {
	for _, v := range networkingVersions {
		if got == v {
			return
		}
	}
	d.Errorf("apiVersion", "unsupported apiVersion for %s (got %q, want one of %s)", kind, got, strings.Join(networkingVersions, ", "))
}

func checkMeta(d *config.Decoder, m config.ObjectMeta) {
	if m.Name == "" {
		d.Errorf("metadata.name", "required")
	}
	if m.Namespace != "" {
		if err := config.CheckNamespace(m.Namespace); err != nil {
			d.Errorf("metadata.namespace", "%v", err)
		}
	}
}

func ref(m config.ObjectMeta) string {
	ns := m.Namespace
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + m.Name
}

func loadDestinationRule(doc config.Document, d *config.Decoder) *loadedRule {
	var dr destinationRuleDoc
	d.Decode(doc.Node, "", &dr)
	if len(d.Errs) > 0 {
		return nil
	}
	checkVersion(d, KindDestinationRule, dr.APIVersion)
	checkMeta(d, dr.Metadata)
	s := dr.Spec
	if s.Subsets != nil {
		d.Errorf("spec.subsets", "not supported: subsets select endpoints of a mesh service; an external destination has none")
	}
	if s.WorkloadSelector != nil {
		d.Errorf("spec.workloadSelector", "not supported: a DestinationRule here applies to every caller of the egress gateway")
	}
	r := &loadedRule{perPort: map[int]*tlsSetting{}, pos: doc.Position()}
	host, err := canonicalPattern(s.Host)
	if err != nil {
		d.Errorf("spec.host", "%v", err)
	}
	r.host = host
	if tp := s.TrafficPolicy; tp != nil {
		dir := filepath.Dir(doc.File)
		r.all = loadTLS(d, dir, "spec.trafficPolicy.tls", tp.TLS)
		for i, pl := range tp.PortLevelSettings {
			path := fmt.Sprintf("spec.trafficPolicy.portLevelSettings[%d]", i)
			if pl.Port.Number < 1 || pl.Port.Number > 65535 {
				d.Errorf(path+".port.number", "want a port 1-65535 (got %d)", pl.Port.Number)
				continue
			}
			if _, dup := r.perPort[pl.Port.Number]; dup {
				d.Errorf(path+".port.number", "port %d has settings already", pl.Port.Number)
				continue
			}
			if t := loadTLS(d, dir, path+".tls", pl.TLS); t != nil {
				r.perPort[pl.Port.Number] = t
			}
		}
	}
	return r
}

// loadTLS reads one tls block; nil when absent. Files are relative to dir.
func loadTLS(d *config.Decoder, dir, path string, t *tlsDoc) *tlsSetting {
	if t == nil {
		return nil
	}
	s := &tlsSetting{}
	switch t.Mode {
	case "DISABLE":
		return s
	case "SIMPLE":
		s.mode = ModeOriginate
	case "MUTUAL":
		s.mode = ModeMutual
		if t.ClientCertificate == "" {
			d.Errorf(path+".clientCertificate", "required with mode MUTUAL (a PEM file path)")
		}
		if t.PrivateKey == "" {
			d.Errorf(path+".privateKey", "required with mode MUTUAL (a PEM file path)")
		}
	case "ISTIO_MUTUAL":
		d.Errorf(path+".mode", "ISTIO_MUTUAL is mesh-internal; an external destination takes SIMPLE or MUTUAL")
		return nil
	default:
		d.Errorf(path+".mode", "want DISABLE, SIMPLE or MUTUAL (got %q)", t.Mode)
		return nil
	}
	if t.CredentialName != "" {
		d.Errorf(path+".credentialName", "not supported: name the PEM files with clientCertificate, privateKey and caCertificates")
	}
	if t.InsecureSkipVerify != nil && *t.InsecureSkipVerify {
		// Verification is the point of originating: a gateway that can't
		// tell the real API from an impostor can't vouch for what it sends.
		d.Errorf(path+".insecureSkipVerify", "not supported: the destination's certificate is always verified (name its CA with caCertificates)")
	}
	if s.mode != ModeMutual && (t.ClientCertificate != "" || t.PrivateKey != "") {
		d.Errorf(path+".clientCertificate", "a client certificate needs mode MUTUAL")
	}
	s.tls = &TLS{
		SNI: t.SNI, CACertificates: resolve(dir, t.CACertificates),
		ClientCertificate: resolve(dir, t.ClientCertificate), PrivateKey: resolve(dir, t.PrivateKey),
		SubjectAltNames: t.SubjectAltNames,
	}
	if len(d.Errs) == 0 {
		cfg, err := s.tls.clientConfig()
		if err != nil {
			d.Errorf(path, "%v", err)
			return nil
		}
		s.config = cfg
	}
	return s
}

// resolve makes a file path relative to the document's directory.
func resolve(dir, file string) string {
	if file == "" || filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(dir, file)
}

func loadServiceEntry(doc config.Document, d *config.Decoder, rules map[string]*loadedRule, used map[string]bool) []*Destination {
	var se serviceEntryDoc
	d.Decode(doc.Node, "", &se)
	if len(d.Errs) > 0 {
		return nil
	}
	checkVersion(d, KindServiceEntry, se.APIVersion)
	checkMeta(d, se.Metadata)
	s := se.Spec
	switch s.Location {
	case "MESH_EXTERNAL":
	case "":
		d.Errorf("spec.location", "required: MESH_EXTERNAL (the egress gateway reaches services outside the mesh)")
	default:
		d.Errorf("spec.location", "want MESH_EXTERNAL (got %q): the egress gateway reaches services outside the mesh", s.Location)
	}
	switch s.Resolution {
	case "DNS", "DNS_ROUND_ROBIN", "NONE":
	case "STATIC":
		d.Errorf("spec.resolution", "STATIC is not supported: the gateway resolves destinations by name and checks the addresses (use DNS)")
	default:
		d.Errorf("spec.resolution", "want DNS, DNS_ROUND_ROBIN or NONE (got %q)", s.Resolution)
	}
	if len(s.Addresses) > 0 {
		d.Errorf("spec.addresses", "not supported: destinations are declared by name, and their resolved addresses pass the SSRF guard")
	}
	if s.Endpoints != nil {
		d.Errorf("spec.endpoints", "not supported: the gateway resolves the hosts themselves")
	}
	if s.WorkloadSelector != nil {
		d.Errorf("spec.workloadSelector", "not supported: a ServiceEntry here declares external hosts for every caller")
	}
	if len(s.Hosts) == 0 {
		d.Errorf("spec.hosts", "required")
	}
	if len(s.Ports) == 0 {
		d.Errorf("spec.ports", "required")
	}
	var out []*Destination
	for i, h := range s.Hosts {
		host, err := canonicalPattern(h)
		if err != nil {
			d.Errorf(fmt.Sprintf("spec.hosts[%d]", i), "%v", err)
			continue
		}
		dest := &Destination{Host: host, Ref: ref(se.Metadata), Pos: doc.Position()}
		rule := rules[host]
		if rule != nil {
			used[host] = true
		}
		seen := map[int]bool{}
		for j, p := range s.Ports {
			path := fmt.Sprintf("spec.ports[%d]", j)
			if p.Number < 1 || p.Number > 65535 {
				d.Errorf(path+".number", "want a port 1-65535 (got %d)", p.Number)
				continue
			}
			if seen[p.Number] {
				d.Errorf(path+".number", "port %d is declared twice", p.Number)
				continue
			}
			seen[p.Number] = true
			if p.TargetPort < 0 || p.TargetPort > 65535 {
				d.Errorf(path+".targetPort", "want a port 1-65535 (got %d)", p.TargetPort)
				continue
			}
			port := Port{Number: p.Number, Target: p.Number, Protocol: strings.ToUpper(p.Protocol)}
			if p.TargetPort != 0 {
				port.Target = p.TargetPort
			}
			// A rule's settings for this very port apply as written; its
			// settings for all ports apply to the HTTP ports only, so that a
			// TLS port beside them keeps passing the workload's own TLS
			// through (originating on top of it would be TLS in TLS).
			var setting *tlsSetting
			tlsPort := port.Protocol == "HTTPS" || port.Protocol == "TLS"
			if rule != nil {
				if pl, ok := rule.perPort[p.Number]; ok {
					setting = pl
				} else if !tlsPort {
					setting = rule.all
				}
			}
			switch {
			case setting != nil && setting.mode != 0:
				if port.Protocol != "HTTP" && port.Protocol != "HTTP2" {
					d.Errorf(path+".protocol", "TLS origination needs protocol HTTP (the workload sends plain HTTP inside its mTLS connection; got %q)", p.Protocol)
					continue
				}
				port.Mode, port.TLS, port.tlsConfig = setting.mode, setting.tls, setting.config
			case tlsPort:
				port.Mode = ModePassthrough
			case port.Protocol == "HTTP" || port.Protocol == "HTTP2":
				d.Errorf(path, "port %d is plain HTTP with no TLS origination: add a DestinationRule for %q with tls.mode SIMPLE (Tollgate never sends a request out unencrypted)", p.Number, host)
				continue
			default:
				d.Errorf(path+".protocol", "want HTTP, HTTP2, HTTPS or TLS (got %q)", p.Protocol)
				continue
			}
			if !strings.HasPrefix(host, "*.") {
				port.hostPort = net.JoinHostPort(host, strconv.Itoa(port.Target))
				port.origin = "https://" + port.hostPort
			}
			dest.Ports = append(dest.Ports, port)
		}
		out = append(out, dest)
	}
	return out
}
