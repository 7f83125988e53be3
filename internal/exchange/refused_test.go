package exchange

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/listener"
)

func TestRefusedAnswersAndAudits(t *testing.T) {
	long := "/" + strings.Repeat("a", 5000)
	tests := []struct {
		name     string
		pe       listener.ProtocolError
		wantMsg  string
		wantEv   audit.Event // the fields compared
		wantPath string
	}{
		{
			name:    "malformed, plain HTTP",
			pe:      listener.ProtocolError{Status: 400, Reason: "Bad Request: missing required Host header"},
			wantMsg: "malformed request",
			wantEv:  audit.Event{Kind: "mesh", Status: 400, Error: audit.ErrBadRequest},
		},
		{
			name: "headers too large, parsed",
			pe: listener.ProtocolError{
				Status: 431, Reason: "Request Header Fields Too Large",
				Request: &http.Request{Method: "GET", Proto: "HTTP/2.0", Host: "Admin.Example.", URL: &url.URL{Path: long, RawQuery: "access_token=secret&a=1"}},
				TLS:     &tls.ConnectionState{Version: tls.VersionTLS13, ServerName: "Admin.Example."},
			},
			wantMsg:  "request headers too large",
			wantEv:   audit.Event{Kind: "mesh", Status: 431, Error: audit.ErrBadRequest, Method: "GET", Protocol: "HTTP/2.0", Host: "admin.example", SNI: "admin.example", TLSVersion: "TLS 1.3"},
			wantPath: long[:maxRefusedPath],
		},
		{name: "version", pe: listener.ProtocolError{Status: 505}, wantMsg: "unsupported HTTP version", wantEv: audit.Event{Kind: "mesh", Status: 505, Error: audit.ErrBadRequest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &events{}
			f := New(Options{Name: "mesh", Recorder: rec})
			tc.pe.RemoteAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7), Port: 4000}
			tc.pe.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 8443}
			tc.pe.Time = time.Now()
			b := f.Refused(tc.pe)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
			if err != nil {
				t.Fatalf("not an HTTP response: %v\n%s", err, b)
			}
			body, _ := io.ReadAll(resp.Body)
			var got struct{ Error, RequestID string }
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.pe.Status || !resp.Close || got.Error != tc.wantMsg || got.RequestID == "" || resp.Header.Get(HeaderRequestID) != got.RequestID {
				t.Errorf("answer %d close=%v %+v header id %q", resp.StatusCode, resp.Close, got, resp.Header.Get(HeaderRequestID))
			}
			if len(rec.completed) != 1 || rec.decided != 0 {
				t.Fatalf("audit: %d completed, %d decided; want one completed", len(rec.completed), rec.decided)
			}
			ev := rec.completed[0]
			if ev.RequestID != got.RequestID || ev.Client.Address != "127.0.0.7" || ev.Listener.Port != 8443 {
				t.Errorf("event ids and endpoints: %+v", ev)
			}
			if ev.Kind != tc.wantEv.Kind || ev.Status != tc.wantEv.Status || ev.Error != tc.wantEv.Error ||
				ev.Method != tc.wantEv.Method || ev.Protocol != tc.wantEv.Protocol || ev.Host != tc.wantEv.Host ||
				ev.SNI != tc.wantEv.SNI || ev.TLSVersion != tc.wantEv.TLSVersion || ev.Path != tc.wantPath {
				t.Errorf("event %+v", ev)
			}
			if strings.Contains(ev.Query, "secret") {
				t.Errorf("token in the audit event: %q", ev.Query)
			}
		})
	}
}
