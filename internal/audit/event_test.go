package audit

import (
	"tollgate.dev/tollgate/internal/request"

	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEventMarshalJSON(t *testing.T) {
	start := time.Date(2026, 9, 24, 12, 13, 20, 123456789, time.FixedZone("CEST", 2*3600))
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{
			name: "minimal event keeps only the always-present fields",
			ev:   Event{Time: start, Kind: Ingress},
			want: `{"time":"2026-09-24T10:13:20.123Z","durationMs":0,"kind":"ingress","status":0,"bytesIn":0,"bytesOut":0}`,
		},
		{
			name: "whole seconds still carry three fractional digits",
			ev:   Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: Egress, Status: 200, Duration: 1500 * time.Microsecond},
			want: `{"time":"2026-01-02T03:04:05.000Z","durationMs":1.5,"kind":"egress","status":200,"bytesIn":0,"bytesOut":0}`,
		},
		{
			name: "denied decision keeps allow false",
			ev: Event{Time: start, Kind: Ingress, Status: 403,
				Decision: &request.Decision{Allow: false, Action: "DENY", Policy: "ns/deny-admin", Rule: 0}},
			want: `{"time":"2026-09-24T10:13:20.123Z","durationMs":0,"kind":"ingress","status":403,"bytesIn":0,"bytesOut":0,` +
				`"decision":{"allow":false,"action":"DENY","policy":"ns/deny-admin","rule":0}}`,
		},
		{
			name: "characters HTML would escape stay readable",
			ev:   Event{Time: start, Kind: Ingress, Path: "/a<b>&c"},
			want: `{"time":"2026-09-24T10:13:20.123Z","durationMs":0,"kind":"ingress","path":"/a<b>&c","status":0,"bytesIn":0,"bytesOut":0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.ev.AppendJSON(nil)); got != tt.want {
				t.Errorf("encoded\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func fullEvent() Event {
	return Event{
		Time:       time.Date(2026, 9, 24, 10, 13, 20, 123000000, time.UTC),
		ID:         "0192b7f0-0000-7000-8000-000000000000",
		Sequence:   7,
		RequestID:  "req-1",
		TraceID:    "4bf92f3577b34da6a3ce929d0e0e4736",
		Kind:       Ingress,
		Client:     Endpoint{Address: "203.0.113.7", Port: 51234},
		Listener:   Endpoint{Address: "10.0.0.5", Port: 8443},
		SNI:        "api.example.com",
		TLSVersion: "1.3",
		TLSCipher:  "TLS_AES_128_GCM_SHA256",
		Host:       "api.example.com",
		Method:     "POST",
		Path:       "/v1/payments",
		Query:      "page=2",
		Protocol:   "HTTP/2",
		Status:     403,
		BytesIn:    812,
		BytesOut:   52,
		Duration:   3250 * time.Microsecond,
		UserAgent:  "curl/8.5.0",
		Route:      "payments",
		Upstream: Upstream{URL: "https://payments.internal:8443", SPIFFEID: "spiffe://example.org/ns/pay/sa/api",
			Address: "10.1.2.3:8443", TLSVersion: "TLS 1.3"},
		SourcePrincipal: "spiffe://example.org/ns/edge/sa/lb",
		Auth:            &Auth{Principal: "https://idp.example.com/alice", Issuer: "https://idp.example.com", Subject: "alice"},
		Decision: &request.Decision{Allow: false, Action: "ALLOW", Policy: "pay/payments-write", Rule: 3,
			Reason: "no ALLOW policy matched", DryRun: true, PolicyVersion: "v42", Audit: true},
		Error:     ErrUpstreamTLS,
		Truncated: true,
	}
}

func TestEventRoundTrip(t *testing.T) {
	want := fullEvent()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got Event
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Event{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestEventJSONNames pins the wire names the SIEM pipeline and doc.go promise, so a
// renamed Go field cannot silently change the schema.
func TestEventJSONNames(t *testing.T) {
	ev := fullEvent()
	// The trail's own fields (never all on one record in practice).
	ev.Phase, ev.Prev, ev.TLSError, ev.Instance = PhaseDecision, "ab", "timeout", "gw-1"
	ev.Gap = &Gap{Dropped: 1, Reason: "quota", Sink: "s", FromSeq: 1, ToSeq: 2}
	ev.Checkpoint = &Checkpoint{Seq: 1, Hash: "ab", KeyID: "cd", Sig: "ef"}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			for kk := range sub {
				got = append(got, k+"."+kk)
			}
			continue
		}
		got = append(got, k)
	}
	slices.Sort(got)
	want := []string{
		"auth.issuer", "auth.principal", "auth.subject", "bytesIn", "bytesOut",
		"client.address", "client.port",
		"decision.action", "decision.allow", "decision.audit", "decision.dryRun", "decision.policy",
		"decision.policyVersion", "decision.reason", "decision.rule",
		"durationMs", "error", "host", "id", "kind", "listener.address", "listener.port", "method", "path",
		"protocol", "query", "requestId", "route", "seq", "sni", "sourcePrincipal", "status", "time",
		"tlsCipher", "tlsVersion", "traceId", "truncated",
		"upstream.address", "upstream.spiffeId", "upstream.tlsVersion", "upstream.url", "userAgent",
		"phase", "prev", "tlsError", "instance", "gap.dropped", "gap.reason", "gap.sink", "gap.fromSeq", "gap.toSeq",
		"checkpoint.seq", "checkpoint.hash", "checkpoint.keyId", "checkpoint.sig",
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON field names (-want +got):\n%s", diff)
	}
	// Every documented name appears in doc.go.
	doc := readDoc(t)
	for _, name := range want {
		if !strings.Contains(doc, "  - "+name+":") && !strings.Contains(doc, " "+name+",") && !strings.Contains(doc, ", "+name+":") {
			t.Errorf("doc.go does not document %q", name)
		}
	}
}

func TestNewIDIsUUIDv7(t *testing.T) {
	at := time.Date(2026, 9, 24, 10, 13, 20, 123000000, time.UTC)
	a, b := newID(at), newID(at)
	if a == b {
		t.Fatalf("two ids are equal: %s", a)
	}
	if len(a) != 36 || a[14] != '7' || !strings.ContainsRune("89ab", rune(a[19])) {
		t.Errorf("id %q is not a UUIDv7", a)
	}
	// The first 48 bits are the Unix milliseconds, so ids sort by time.
	if got, want := strings.ReplaceAll(a[:13], "-", ""), fmt.Sprintf("%012x", at.UnixMilli()); got != want {
		t.Errorf("id %q does not start with the timestamp 0x%012x", a, at.UnixMilli())
	}
	if later := newID(at.Add(time.Millisecond)); later[:13] <= a[:13] {
		t.Errorf("later id %q does not sort after %q", later, a)
	}
}
