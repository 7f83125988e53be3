package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/audit/audittest"
)

// webhookEndpoint is an NDJSON receiver that fails its first requests (a
// SIEM that is down).
type webhookEndpoint struct {
	mu        sync.Mutex
	failFirst int
	requests  int
	batches   []int
	ids       map[string]int
}

func (e *webhookEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-ndjson" || r.Header.Get("Authorization") != "Bearer t0ken" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if e.requests <= e.failFirst {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	n := 0
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			RequestID string `json:"requestId"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			http.Error(w, "not NDJSON", http.StatusBadRequest)
			return
		}
		e.ids[ev.RequestID]++
		n++
	}
	e.batches = append(e.batches, n)
	w.WriteHeader(http.StatusAccepted)
}

func TestWebhookSinkBatchesAndRetries(t *testing.T) {
	ep := &webhookEndpoint{failFirst: 3, ids: map[string]int{}}
	srv := httptest.NewTLSServer(ep)
	defer srv.Close()
	sink, err := NewWebhookSink(WebhookOptions{URL: srv.URL + "/ingest?key=secret", Client: srv.Client(),
		Header: http.Header{"Authorization": {"Bearer t0ken"}}, MaxRecords: 50})
	if err != nil {
		t.Fatal(err)
	}
	l := newJournalLogger(t, openTestJournal(t, t.TempDir(), JournalOptions{}), Config{Sinks: []Sink{sink}, SinkNames: []string{"webhook"}, DrainTimeout: 30 * time.Second})
	const n = 400
	for i := 1; i <= n; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for i := 1; i <= n; i++ {
		if ep.ids[fmt.Sprint(i)] != 1 {
			t.Fatalf("event %d delivered %d times, want 1", i, ep.ids[fmt.Sprint(i)])
		}
	}
	maxBatch := 0
	for _, b := range ep.batches {
		maxBatch = max(maxBatch, b)
	}
	if maxBatch < 2 || maxBatch > 50 {
		t.Errorf("largest batch %d records, want between 2 and 50", maxBatch)
	}
	if st := l.Stats().Sinks[0]; st.Retries != 3 || st.Delivered != n {
		t.Errorf("stats %+v, want 3 retries and %d delivered", st, n)
	}
}

func TestHECSinkWithIndexerAcknowledgement(t *testing.T) {
	ep := audittest.NewHEC("hec-token")
	ep.LostAck = 2
	srv := httptest.NewTLSServer(ep)
	defer srv.Close()
	sink, err := NewHECSink(HECOptions{URL: srv.URL, Token: "hec-token", Client: srv.Client(), Ack: true,
		AckPoll: 5 * time.Millisecond, AckTimeout: 200 * time.Millisecond, MaxRecords: 20})
	if err != nil {
		t.Fatal(err)
	}
	l := newJournalLogger(t, openTestJournal(t, t.TempDir(), JournalOptions{}), Config{Sinks: []Sink{sink}, SinkNames: []string{"splunk"}, DrainTimeout: 30 * time.Second})
	const n = 100
	for i := 1; i <= n; i++ {
		l.Record(&Event{RequestID: fmt.Sprint(i)})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ids := ep.RequestIDs()
	for i := 1; i <= n; i++ {
		if ids[fmt.Sprint(i)] != 1 {
			t.Errorf("event %d indexed %d times, want 1 (the lost batch sent again)", i, ids[fmt.Sprint(i)])
		}
	}
	if st := l.Stats().Sinks[0]; st.Retries < 1 || st.Delivered != n {
		t.Errorf("stats %+v, want a retry for the unacknowledged batch and %d delivered", st, n)
	}
	if p := ep.Polls(1); p < 2 {
		t.Errorf("batch 1 polled %d times: the sink did not wait for the indexer", p)
	}
}

func TestHECSinkRefusals(t *testing.T) {
	ep := audittest.NewHEC("right")
	srv := httptest.NewTLSServer(ep)
	defer srv.Close()
	sink, err := NewHECSink(HECOptions{URL: srv.URL, Token: "wrong", Client: srv.Client(), Channel: "c"})
	if err != nil {
		t.Fatal(err)
	}
	err = sink.Write(t.Context(), []byte(`{"time":"2026-12-07T10:00:00.000Z","durationMs":0,"kind":"ingress","status":200,"bytesIn":0,"bytesOut":0}`+"\n"))
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong token: %v (want the status, never the token)", err)
	}
	for _, tt := range []struct {
		opts HECOptions
		want string
	}{
		{HECOptions{URL: "http://splunk:8088", Token: "x"}, "want https://"},
		{HECOptions{URL: "https://splunk:8088"}, "no token"},
	} {
		if _, err := NewHECSink(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewHECSink(%+v): %v, want %q", tt.opts, err, tt.want)
		}
	}
	if _, err := NewWebhookSink(WebhookOptions{URL: "http://x"}); err == nil {
		t.Error("a plain-HTTP webhook was accepted")
	}
}

func TestRecordTime(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 123e6, time.UTC)
	ev := &Event{Time: at, Kind: Ingress, Method: "GET"}
	for name, line := range map[string][]byte{"native": ev.AppendJSON(nil), "ocsf": ev.AppendOCSF(nil, DefaultProduct)} {
		if got, ok := recordTime(line); !ok || !got.Equal(at) {
			t.Errorf("%s: %v %v, want %v", name, got, ok, at)
		}
	}
	if _, ok := recordTime(bytes.Repeat([]byte("x"), 3)); ok {
		t.Error("time from garbage")
	}
}
