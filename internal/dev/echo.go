package dev

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"time"

	"tollgate.dev/tollgate/internal/identity"
)

// EchoResponse is what the demo upstream answers: how it saw the request.
type EchoResponse struct {
	Service string `json:"service"`
	// Caller is the verified SPIFFE ID of the mTLS peer: the gateway.
	Caller     string              `json:"caller"`
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	Query      string              `json:"query,omitempty"`
	Proto      string              `json:"proto"`
	Headers    map[string][]string `json:"headers"`
	ReceivedAt string              `json:"receivedAt"`
}

// Echo is the demo upstream: an mTLS server that accepts only the gateway's
// SPIFFE ID and describes every request it receives as JSON.
type Echo struct {
	srv *http.Server
	ln  net.Listener
}

// StartEcho serves the echo upstream on addr with src's SVID, accepting callers
// whose ID matches allowed.
func StartEcho(addr string, src identity.Source, allowed identity.Matcher, log *slog.Logger) (*Echo, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := identity.ServerTLSConfig(src, allowed)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	e := &Echo{ln: tls.NewListener(ln, cfg)}
	e.srv = &http.Server{
		Handler:           http.HandlerFunc(serveEcho),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := e.srv.Serve(e.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("echo upstream stopped", "err", err)
		}
	}()
	return e, nil
}

// Addr is the echo upstream's address.
func (e *Echo) Addr() string { return e.ln.Addr().String() }

// Close stops the echo upstream.
func (e *Echo) Close() error { return e.srv.Close() }

func serveEcho(w http.ResponseWriter, r *http.Request) {
	resp := EchoResponse{
		Service: "tollgate-dev-echo", Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(),
		Query: r.URL.RawQuery, Proto: r.Proto, Headers: map[string][]string{},
		ReceivedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}
	if r.TLS != nil {
		if id, ok := identity.PeerID(*r.TLS); ok {
			resp.Caller = id.String()
		}
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		resp.Headers[k] = r.Header[k]
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(resp)
}
