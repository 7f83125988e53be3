package ingress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/exchange"
	"tollgate.dev/tollgate/internal/request"
)

// pathAuthorizer denies paths under /deny/ and names the path in its reason,
// so that an audit record shows whether its decision is its own.
type pathAuthorizer struct{}

func (pathAuthorizer) Authorize(r *request.Request) request.Decision {
	if strings.HasPrefix(r.Path, "/deny/") {
		return request.Decision{Policy: "test/deny", Action: "DENY", Reason: "denied " + r.Path}
	}
	return request.Decision{Allow: true, Policy: "test/allow", Action: "ALLOW", Reason: "allowed " + r.Path}
}

// lineSink keeps the records a Logger writes.
type lineSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *lineSink) Write(_ context.Context, line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(line)
	return nil
}

func (s *lineSink) Close() error { return nil }

// TestPooledExchangesKeepRecordsApart: the handler's exchanges come from a
// pool, and the audit Logger hands each back once it has encoded its event.
// Under concurrent load, allowed and denied, with and without a body, over
// HTTP/1.1 and HTTP/2, every request gets exactly one record, and each
// record is its own request's: id, path, decision and status agree with
// what the client sent and got. Run with -race, a reuse too early is also a
// reported race.
func TestPooledExchangesKeepRecordsApart(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			sink := &lineSink{}
			lg, err := audit.New(audit.Config{Sinks: []audit.Sink{sink}})
			if err != nil {
				t.Fatal(err)
			}
			tb := newTestbed(t, testbedOptions{audit: lg, authorize: pathAuthorizer{}, quiet: true})
			c := tb.client(h2)
			type sent struct {
				path   string
				status int
			}
			const clients, each = 16, 40
			var (
				mu   sync.Mutex
				byID = map[string]sent{}
				wg   sync.WaitGroup
			)
			for g := range clients {
				wg.Go(func() {
					for i := range each {
						path := fmt.Sprintf("/api/%d-%d", g, i)
						method, body := http.MethodGet, io.Reader(nil)
						switch i % 4 {
						case 1:
							path = fmt.Sprintf("/deny/%d-%d", g, i)
						case 2:
							method, body = http.MethodPost, strings.NewReader(path)
						}
						req, err := http.NewRequest(method, tb.front.URL+path, body)
						if err != nil {
							t.Error(err)
							return
						}
						resp, err := c.Do(req)
						if err != nil {
							t.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						id := resp.Header.Get(exchange.HeaderRequestID)
						mu.Lock()
						byID[id] = sent{path: path, status: resp.StatusCode}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if err := lg.Close(); err != nil {
				t.Fatal(err)
			}
			if len(byID) != clients*each {
				t.Fatalf("%d distinct request ids for %d requests", len(byID), clients*each)
			}
			n := 0
			sc := bufio.NewScanner(&sink.buf)
			for sc.Scan() {
				var ev audit.Event
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					t.Fatal(err)
				}
				n++
				s, ok := byID[ev.RequestID]
				if !ok {
					t.Errorf("record of an unknown request: %s", sc.Text())
					continue
				}
				delete(byID, ev.RequestID) // a second record for it is unknown
				verb := "allowed "
				if strings.HasPrefix(s.path, "/deny/") {
					verb = "denied "
				}
				if ev.Path != s.path || ev.Status != s.status || ev.Decision == nil || ev.Decision.Reason != verb+s.path {
					t.Errorf("request %s sent %s and got %d; its record: %s", ev.RequestID, s.path, s.status, sc.Text())
				}
			}
			if n != clients*each {
				t.Errorf("%d records for %d requests", n, clients*each)
			}
		})
	}
}
