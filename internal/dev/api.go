package dev

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// APIResponse is what the demo external API answers: how it saw the call that
// the gateway originated on the workload's behalf.
type APIResponse struct {
	Service string `json:"service"`
	Method  string `json:"method"`
	Host    string `json:"host"`
	Path    string `json:"path"`
	Query   string `json:"query,omitempty"`
	Proto   string `json:"proto"`
	// TLS is the version of the connection the gateway originated.
	TLS string `json:"tls"`
	// Headers are the request's headers; credential-looking ones are masked.
	Headers    map[string][]string `json:"headers"`
	ReceivedAt string              `json:"receivedAt"`
}

// API is dev mode's demo "external API": an ordinary HTTPS server (no client
// certificate asked, as on the internet) that describes every call it
// receives, showing only the outline of anything that looks like a secret.
type API struct {
	srv *http.Server
	ln  net.Listener
}

// StartAPI serves the demo API on addr with cert.
func StartAPI(addr string, cert tls.Certificate, log *slog.Logger) (*API, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	a := &API{ln: tls.NewListener(ln, cfg)}
	a.srv = &http.Server{
		Handler:           http.HandlerFunc(serveAPI),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo API stopped", "err", err)
		}
	}()
	return a, nil
}

// Addr is the demo API's address.
func (a *API) Addr() string { return a.ln.Addr().String() }

// Close stops the demo API.
func (a *API) Close() error { return a.srv.Close() }

func serveAPI(w http.ResponseWriter, r *http.Request) {
	resp := APIResponse{
		Service: "tollgate-dev-api", Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(),
		Query: r.URL.RawQuery, Proto: r.Proto, Headers: map[string][]string{},
		ReceivedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}
	if r.TLS != nil {
		resp.TLS = tls.VersionName(r.TLS.Version)
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vs := r.Header[k]
		if credentialHeader(k) {
			masked := make([]string, len(vs))
			for i, v := range vs {
				masked[i] = Mask(v)
			}
			vs = masked
		}
		resp.Headers[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(resp)
}

// credentialWords are parts of header names that carry secrets by custom:
// Authorization, Proxy-Authorization, Cookie, X-Api-Key, X-Auth-Token,
// X-Client-Secret, Private-Token and the like.
var credentialWords = []string{"auth", "cookie", "key", "token", "secret", "password", "credential", "session", "signature"}

// credentialHeader reports whether a header named name looks like it carries
// a credential. The demo answers with what it received, and a terminal or a
// shared screen must not show a working secret.
func credentialHeader(name string) bool {
	n := strings.ToLower(name)
	for _, w := range credentialWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// Mask shows enough of a credential to tell that it arrived and which one it
// is, and not enough to use it: an authorization scheme ("Bearer") as sent,
// then at most the first four characters of the secret (none of a short one)
// and its length.
func Mask(v string) string {
	scheme, secret := "", v
	if i := strings.IndexByte(v, ' '); i > 0 {
		scheme, secret = v[:i+1], strings.TrimLeft(v[i+1:], " ")
	}
	shown := ""
	if len(secret) >= 16 {
		shown = secret[:4]
	}
	return fmt.Sprintf("%s%s…(masked, %d bytes)", scheme, shown, len(secret))
}
