package audit

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logs "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"
)

// otlpEndpoint decodes OTLP/HTTP protobuf log exports.
type otlpEndpoint struct {
	mu        sync.Mutex
	failFirst int
	requests  int
	records   []*logs.LogRecord
	resource  map[string]string
}

func (e *otlpEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	if r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	if e.requests <= e.failFirst {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var req collogs.ExportLogsServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, "not protobuf", http.StatusBadRequest)
		return
	}
	for _, rl := range req.ResourceLogs {
		e.resource = map[string]string{}
		for _, kv := range rl.GetResource().GetAttributes() {
			e.resource[kv.Key] = kv.GetValue().GetStringValue()
		}
		for _, sl := range rl.ScopeLogs {
			e.records = append(e.records, sl.LogRecords...)
		}
	}
	out, _ := proto.Marshal(&collogs.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func TestOTLPSink(t *testing.T) {
	ep := &otlpEndpoint{failFirst: 2}
	srv := httptest.NewTLSServer(ep)
	defer srv.Close()
	sink, err := NewOTLPSink(OTLPOptions{URL: srv.URL + "/v1/logs", Client: srv.Client(), Product: Product{Name: "Tollgate", Vendor: "Tollgate", Version: "1.0"}})
	if err != nil {
		t.Fatal(err)
	}
	l := newJournalLogger(t, openTestJournal(t, t.TempDir(), JournalOptions{}), Config{Sinks: []Sink{sink}, SinkNames: []string{"otlp"}, DrainTimeout: 30 * time.Second})
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	const n = 120
	for i := 1; i <= n; i++ {
		ev := &Event{Time: at, RequestID: fmt.Sprint(i), Kind: Ingress, Status: 200, Method: "GET"}
		if i == 1 {
			ev.TraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
			ev.Status, ev.Decision = 403, deny()
		}
		l.Record(ev)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if len(ep.records) != n {
		t.Fatalf("collector got %d records, want %d", len(ep.records), n)
	}
	if ep.resource["service.name"] != "tollgate" || ep.resource["service.version"] != "1.0" {
		t.Errorf("resource %v", ep.resource)
	}
	uids := map[string]bool{}
	for i, r := range ep.records {
		attrs := map[string]string{}
		for _, kv := range r.Attributes {
			attrs[kv.Key] = kv.GetValue().GetStringValue()
			if kv.Key == "http.response.status_code" {
				attrs[kv.Key] = fmt.Sprint(kv.GetValue().GetIntValue())
			}
		}
		uids[attrs["log.record.uid"]] = true
		if r.TimeUnixNano != uint64(at.UnixNano()) || r.EventName != "tollgate.audit" || !strings.Contains(r.GetBody().GetStringValue(), `"requestId"`) {
			t.Errorf("record %d: time %d event %q body %q", i, r.TimeUnixNano, r.EventName, r.GetBody().GetStringValue())
		}
		if attrs["tollgate.request_id"] == "1" {
			if hex.EncodeToString(r.TraceId) != "4bf92f3577b34da6a3ce929d0e0e4736" || r.SeverityText != "WARN" || attrs["http.response.status_code"] != "403" {
				t.Errorf("the denied record: trace %x severity %s status %s", r.TraceId, r.SeverityText, attrs["http.response.status_code"])
			}
		}
	}
	if len(uids) != n {
		t.Errorf("%d distinct log.record.uid, want %d", len(uids), n)
	}
	if st := l.Stats().Sinks[0]; st.Retries != 2 {
		t.Errorf("retries %d, want 2", st.Retries)
	}
}
