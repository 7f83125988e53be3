package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// ocsfSchema is the vendored part of OCSF 1.8.0 (scripts/ocsf/vendor.py):
// the HTTP Activity class with the gateway's profiles and the objects the
// formatter emits.
type ocsfSchema struct {
	Version string `json:"version"`
	Class   struct {
		UID         int                       `json:"uid"`
		CategoryUID int                       `json:"category_uid"`
		Attributes  map[string]ocsfSchemaAttr `json:"attributes"`
		Constraints map[string][]string       `json:"constraints"`
	} `json:"class"`
	NetworkClass struct {
		UID         int                       `json:"uid"`
		CategoryUID int                       `json:"category_uid"`
		Attributes  map[string]ocsfSchemaAttr `json:"attributes"`
		Constraints map[string][]string       `json:"constraints"`
	} `json:"network_class"`
	Objects map[string]struct {
		Attributes  map[string]ocsfSchemaAttr `json:"attributes"`
		Constraints map[string][]string       `json:"constraints"`
	} `json:"objects"`
}

type ocsfSchemaAttr struct {
	Requirement string            `json:"requirement"`
	Type        string            `json:"type"`
	Array       bool              `json:"array"`
	Enum        map[string]string `json:"enum"`
}

func loadOCSFSchema(t *testing.T) *ocsfSchema {
	t.Helper()
	b, err := os.ReadFile("testdata/ocsf-1.8.0.json")
	if err != nil {
		t.Fatal(err)
	}
	var s ocsfSchema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Version != OCSFVersion {
		t.Fatalf("vendored schema %s, formatter says %s", s.Version, OCSFVersion)
	}
	return &s
}

// captions pairs an enum attribute with the attribute that carries its
// caption.
var captions = map[string]string{
	"activity_id": "activity_name", "severity_id": "severity", "status_id": "status",
	"action_id": "action", "disposition_id": "disposition", "direction_id": "direction", "type_id": "type",
}

// checkOCSF checks one object of a record against its schema: required
// attributes, at_least_one constraints, no attribute the schema doesn't
// have, types, enum values and their captions.
func (s *ocsfSchema) check(path string, v map[string]any, attrs map[string]ocsfSchemaAttr, constraints map[string][]string) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	for name, a := range attrs {
		if a.Requirement == "required" {
			if _, ok := v[name]; !ok {
				bad("required attribute %s missing", name)
			}
		}
	}
	if one := constraints["at_least_one"]; len(one) > 0 {
		found := false
		for _, name := range one {
			if _, ok := v[name]; ok {
				found = true
			}
		}
		if !found {
			bad("none of %v (at_least_one)", one)
		}
	}
	for name, val := range v {
		a, ok := attrs[name]
		if !ok {
			// The datetime profile adds an RFC 3339 twin to every timestamp.
			if base, isDt := strings.CutSuffix(name, "_dt"); isDt && attrs[base].Type == "timestamp_t" {
				if _, str := val.(string); !str {
					bad("%s is not a string", name)
				}
				continue
			}
			bad("attribute %s is not in OCSF %s", name, s.Version)
			continue
		}
		vals := []any{val}
		if a.Array {
			arr, ok := val.([]any)
			if !ok {
				bad("%s is not an array", name)
				continue
			}
			vals = arr
		}
		for _, x := range vals {
			errs = append(errs, s.checkValue(path+"."+name, x, a)...)
		}
		// class_uid, category_uid and type_uid follow from the class (their
		// enums here are the base event's); the caller checks them.
		if len(a.Enum) > 0 && name != "class_uid" && name != "category_uid" && name != "type_uid" {
			n, _ := val.(float64)
			id := fmt.Sprint(int(n))
			caption, known := a.Enum[id]
			if !known && id != "0" && id != "99" {
				bad("%s = %s is not one of its enum values", name, id)
			}
			if c, has := captions[name]; has && known {
				if got, _ := v[c].(string); got != caption {
					bad("%s = %q, want the caption of %s %s: %q", c, got, name, id, caption)
				}
			}
		}
	}
	return errs
}

func (s *ocsfSchema) checkValue(path string, x any, a ocsfSchemaAttr) []string {
	typeErr := func(want string) []string { return []string{fmt.Sprintf("%s: %v is not %s", path, x, want)} }
	switch a.Type {
	case "integer_t", "long_t", "port_t", "timestamp_t":
		if n, ok := x.(float64); !ok || n != float64(int64(n)) {
			return typeErr("an integer")
		}
	case "string_t", "hostname_t", "ip_t", "url_t", "username_t", "email_t", "uuid_t":
		if _, ok := x.(string); !ok {
			return typeErr("a string")
		}
	case "boolean_t":
		if _, ok := x.(bool); !ok {
			return typeErr("a boolean")
		}
	case "object", "json_t":
		// unmapped: anything goes
	default:
		o, ok := s.Objects[a.Type]
		if !ok {
			return []string{fmt.Sprintf("%s: object %s is not vendored (add it to scripts/ocsf/vendor.py)", path, a.Type)}
		}
		m, ok := x.(map[string]any)
		if !ok {
			return typeErr("an object")
		}
		return s.check(path, m, o.Attributes, o.Constraints)
	}
	return nil
}

// checkRecord checks a record against the class its class_uid names.
func (s *ocsfSchema) checkRecord(m map[string]any) []string {
	switch m["class_uid"] {
	case float64(s.Class.UID):
		return s.check("event", m, s.Class.Attributes, s.Class.Constraints)
	case float64(s.NetworkClass.UID):
		return s.check("event", m, s.NetworkClass.Attributes, s.NetworkClass.Constraints)
	case 0.0:
		var errs []string
		for _, k := range []string{"activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"} {
			if _, ok := m[k]; !ok {
				errs = append(errs, "required attribute "+k+" missing")
			}
		}
		return errs
	}
	return []string{fmt.Sprintf("class_uid %v is none the formatter should make", m["class_uid"])}
}

func ocsfTestEvents() map[string]*Event {
	at := time.Date(2026, 12, 7, 10, 0, 0, 123e6, time.UTC)
	allow := &request.Decision{Allow: true, Action: "ALLOW", Policy: "istio-system/allow-api", Rule: 0, PolicyVersion: "v1", Reason: "rule 0 of allow-api matched"}
	deny := &request.Decision{Allow: false, Action: "DENY", Policy: "istio-system/deny-admin", Rule: 1, Reason: "rule 1 of deny-admin matched"}
	return map[string]*Event{
		"ingress allowed, JWT": {Time: at, ID: "id-1", Sequence: 7, RequestID: "r1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Kind: Ingress,
			Client: Endpoint{Address: "203.0.113.9", Port: 40000}, Listener: Endpoint{Address: "10.0.0.1", Port: 8443},
			SNI: "app.example.com", TLSVersion: "TLS 1.3", TLSCipher: "TLS_AES_128_GCM_SHA256",
			Host: "app.example.com", Method: "GET", Path: "/api/items", Query: "page=2&token=REDACTED", Protocol: "HTTP/2",
			Status: 200, BytesIn: 0, BytesOut: 512, Duration: 3 * time.Millisecond, UserAgent: "curl/8", Route: "api",
			Upstream: Upstream{URL: "https://api:8443", SPIFFEID: "spiffe://example.org/ns/api/sa/api", Address: "10.0.1.5:8443"},
			Auth:     &Auth{Principal: "https://issuer.example/alice", Issuer: "https://issuer.example", Subject: "alice"}, Decision: allow},
		"ingress denied": {Time: at, Kind: Ingress, Client: Endpoint{Address: "203.0.113.9", Port: 40001}, TLSVersion: "TLS 1.2",
			Host: "app.example.com", Method: "POST", Path: "/admin", Protocol: "HTTP/1.1", Status: 403, Decision: deny},
		"ingress unauthenticated": {Time: at, Kind: Ingress, Method: "GET", Host: "app.example.com:8443", Path: "/", Status: 401, Error: ErrUnauthenticated},
		"dry-run deny": {Time: at, Kind: Mesh, SourcePrincipal: "spiffe://example.org/ns/web/sa/web", Method: "DELETE", Host: "svc", Path: "/x", Status: 204,
			Decision: &request.Decision{Allow: false, DryRun: true, Policy: "ns/p", Rule: request.NoRule, Reason: "dry-run"}},
		"egress call": {Time: at, Kind: Egress, SourcePrincipal: "spiffe://example.org/ns/billing/sa/worker", Method: "PATCH",
			Host: "api.example.com", Path: "/v1/x", Status: 200, Upstream: Upstream{URL: "https://api.example.com:443", Address: "198.51.100.7:443", TLSVersion: "TLS 1.3"}, Decision: allow},
		"egress tunnel":      {Time: at, Kind: Egress, Method: "CONNECT", Host: "db.example.com:5432", Status: 200, BytesIn: 1 << 20, BytesOut: 4096},
		"odd method":         {Time: at, Kind: Ingress, Method: "PROPFIND", Host: "h", Path: "/", Status: 405},
		"refused unparsed":   {Time: at, Kind: Ingress, Client: Endpoint{Address: "::1", Port: 5}, Status: 400, Error: ErrBadRequest},
		"fail-closed record": {Time: at, Kind: Ingress, Method: "GET", Host: "h", Path: "/", Phase: PhaseDecision, Decision: allow},
		"gap record":         {Time: at, Kind: Audit, Gap: &Gap{Dropped: 3, Reason: "queue_full"}},
		"tls handshake refused": {Time: at, Kind: Egress, Client: Endpoint{Address: "127.0.0.1", Port: 5}, Listener: Endpoint{Address: "127.0.0.1", Port: 15443},
			SNI: "egress.local", Error: ErrTLSHandshake, TLSError: "bad_client_certificate"},
		"tls handshake timeout": {Time: at, Kind: Ingress, Client: Endpoint{Address: "203.0.113.1", Port: 5}, Error: ErrTLSHandshake, TLSError: "timeout"},
		"checkpoint record":     {Time: at, Kind: Audit, Checkpoint: &Checkpoint{Seq: 9, Hash: "ab", KeyID: "cd", Sig: "ef"}},
	}
}

// TestOCSFConformsToSchema checks every record the formatter makes against
// the vendored OCSF 1.8.0 schema: the base event's and HTTP Activity's
// required attributes, the objects' required attributes and constraints,
// only attributes OCSF defines, types, enum values and captions, and the
// type_uid arithmetic.
func TestOCSFConformsToSchema(t *testing.T) {
	s := loadOCSFSchema(t)
	for name, ev := range ocsfTestEvents() {
		t.Run(name, func(t *testing.T) {
			b := ev.AppendOCSF(nil, DefaultProduct)
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, b)
			}
			classUID, _ := m["class_uid"].(float64)
			activity, _ := m["activity_id"].(float64)
			if typ, _ := m["type_uid"].(float64); typ != classUID*100+activity {
				t.Errorf("type_uid %v, want class_uid*100 + activity_id = %v", typ, classUID*100+activity)
			}
			var errs []string
			if ev.Kind == Audit {
				// The base event: only its required attributes apply.
				base := map[string]ocsfSchemaAttr{}
				for _, k := range []string{"activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"} {
					base[k] = s.Class.Attributes[k]
				}
				if classUID != 0 {
					t.Errorf("class_uid %v, want 0 (base event)", classUID)
				}
				for k := range base {
					if _, ok := m[k]; !ok {
						errs = append(errs, "required attribute "+k+" missing")
					}
				}
			} else if ev.Error == ErrTLSHandshake {
				if classUID != float64(s.NetworkClass.UID) {
					t.Errorf("class %v, want Network Activity %d", classUID, s.NetworkClass.UID)
				}
				errs = s.check("event", m, s.NetworkClass.Attributes, s.NetworkClass.Constraints)
			} else {
				if classUID != float64(s.Class.UID) || m["category_uid"] != float64(s.Class.CategoryUID) {
					t.Errorf("class %v category %v, want %d %d", classUID, m["category_uid"], s.Class.UID, s.Class.CategoryUID)
				}
				errs = s.check("event", m, s.Class.Attributes, s.Class.Constraints)
			}
			for _, e := range errs {
				t.Error(e)
			}
			if t.Failed() {
				t.Logf("record: %s", b)
			}
		})
	}
}

// TestOCSFMapping pins what a few fields mean, where the schema can't tell
// right from wrong: directions, who the actor is, bytes each way.
func TestOCSFMapping(t *testing.T) {
	evs := ocsfTestEvents()
	get := func(name string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(evs[name].AppendOCSF(nil, Product{Name: "Tollgate", Vendor: "Tollgate", Version: "1.2.3"}), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	at := func(m map[string]any, path string) any {
		var v any = m
		for _, k := range strings.Split(path, ".") {
			mm, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = mm[k]
		}
		return v
	}
	tests := []struct {
		event, path string
		want        any
	}{
		{"ingress allowed, JWT", "actor.user.uid", "https://issuer.example/alice"},
		{"ingress allowed, JWT", "actor.idp.uid", "https://issuer.example"},
		{"ingress allowed, JWT", "connection_info.direction", "Inbound"},
		{"ingress allowed, JWT", "dst_endpoint.uid", "spiffe://example.org/ns/api/sa/api"},
		{"ingress allowed, JWT", "dst_endpoint.ip", "10.0.1.5"},
		{"ingress allowed, JWT", "proxy_endpoint.port", 8443.0},
		{"ingress allowed, JWT", "tls.version", "1.3"},
		{"ingress allowed, JWT", "http_request.url.query_string", "page=2&token=REDACTED"},
		{"ingress allowed, JWT", "metadata.uid", "id-1"},
		{"ingress allowed, JWT", "metadata.sequence", 7.0},
		{"ingress allowed, JWT", "metadata.correlation_uid", "r1"},
		{"ingress allowed, JWT", "metadata.product.version", "1.2.3"},
		{"ingress allowed, JWT", "time", float64(time.Date(2026, 12, 7, 10, 0, 0, 123e6, time.UTC).UnixMilli())},
		{"ingress allowed, JWT", "firewall_rule.uid", "istio-system/allow-api/rules[0]"},
		{"ingress allowed, JWT", "action", "Allowed"},
		{"ingress denied", "disposition", "Blocked"},
		{"ingress denied", "severity", "Medium"},
		{"ingress unauthenticated", "disposition", "Unauthorized"},
		{"dry-run deny", "action", "Observed"},
		{"dry-run deny", "actor.user.type", "Service"},
		{"egress call", "connection_info.direction", "Outbound"},
		{"egress call", "proxy_tls.version", "1.3"},
		{"egress tunnel", "activity_name", "Connect"},
		{"egress tunnel", "traffic.bytes_out", float64(1 << 20)}, // from the workload
		{"egress tunnel", "traffic.bytes_in", 4096.0},
		{"odd method", "activity_id", 99.0},
		{"fail-closed record", "unmapped.tollgate.phase", "decision"},
		{"gap record", "unmapped.tollgate.gap.dropped", 3.0},
		{"tls handshake refused", "activity_name", "Refuse"},
		{"tls handshake refused", "class_uid", 4001.0},
		{"tls handshake refused", "dst_endpoint.hostname", "egress.local"},
		{"tls handshake refused", "status_detail", "tls_handshake: bad_client_certificate"},
		{"tls handshake timeout", "activity_name", "Fail"},
	}
	for _, tt := range tests {
		if got := at(get(tt.event), tt.path); got != tt.want {
			t.Errorf("%s: %s = %v, want %v", tt.event, tt.path, got, tt.want)
		}
	}
}

// TestSinkFormats: each sink gets the format it asks for, with and without
// a journal, from the same records.
func TestSinkFormats(t *testing.T) {
	s := loadOCSFSchema(t)
	for _, journal := range []bool{false, true} {
		t.Run(fmt.Sprint("journal=", journal), func(t *testing.T) {
			native, ocsf := &collectSink{}, &collectSink{}
			cfg := Config{Sinks: []Sink{native, ocsf}, SinkFormats: []Format{FormatNative, FormatOCSF}, Product: Product{Name: "Tollgate", Vendor: "Tollgate", Version: "9.9"}}
			var l *Logger
			if journal {
				l = newJournalLogger(t, openTestJournal(t, t.TempDir(), JournalOptions{}), cfg)
			} else {
				var err error
				if l, err = New(cfg); err != nil {
					t.Fatal(err)
				}
			}
			for _, ev := range ocsfTestEvents() {
				if ev.Kind != Audit {
					l.Record(ev)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if len(native.lines) != len(ocsf.lines) || len(native.lines) < 5 {
				t.Fatalf("native %d lines, ocsf %d", len(native.lines), len(ocsf.lines))
			}
			decodeLines(t, strings.Join(native.lines, "")) // the native schema, strictly
			for i, line := range ocsf.lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("ocsf line %d: %v", i, err)
				}
				for _, e := range s.checkRecord(m) {
					t.Errorf("ocsf line %d: %s", i, e)
				}
				if v := m["metadata"].(map[string]any)["product"].(map[string]any)["version"]; v != "9.9" {
					t.Errorf("ocsf line %d: product version %v", i, v)
				}
			}
		})
	}
	if _, err := New(Config{Sinks: []Sink{&collectSink{}}, SinkFormats: []Format{"leef"}}); err == nil || !strings.Contains(err.Error(), `unknown format "leef"`) {
		t.Errorf("New with an unknown format: %v", err)
	}
}
