package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultAdminAddr is loopback only: metrics and readiness details are for the
// local agent and the kubelet, not for the network. Binding elsewhere is the config
// layer's decision.
const DefaultAdminAddr = "127.0.0.1:9901"

// Timeouts of the admin server. A scrape of a large registry can take a while to
// write; everything else is small.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	adminWriteTimeout      = 30 * time.Second
	adminIdleTimeout       = 60 * time.Second
	adminMaxHeaderBytes    = 16 << 10
)

// AdminServer serves /healthz, /readyz and /metrics on its own listener, apart
// from the traffic listeners, so probes keep answering when those are saturated.
// It serves plain HTTP and has no authentication: keep it on loopback or a
// network only the platform reaches.
type AdminServer struct {
	addr    string
	handler http.Handler

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	serveErr chan error
	stopped  bool
}

// NewAdminServer returns a server for addr ("" means DefaultAdminAddr). A nil h
// serves /readyz as always ready; a nil m serves no /metrics.
func NewAdminServer(addr string, h *Health, m *Metrics) *AdminServer {
	if addr == "" {
		addr = DefaultAdminAddr
	}
	if h == nil {
		h = NewHealth()
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", h.LiveHandler())
	mux.Handle("/readyz", h.ReadyHandler())
	if m != nil {
		mux.Handle("/metrics", m.Handler())
	}
	return &AdminServer{addr: addr, handler: mux}
}

// Handler returns the admin routes, for tests or to mount them elsewhere.
func (s *AdminServer) Handler() http.Handler { return s.handler }

// Start binds the listener and serves in the background. Binding errors (address
// in use, permission) are returned here, not later.
func (s *AdminServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("telemetry: admin server already shut down")
	}
	if s.srv != nil {
		return errors.New("telemetry: admin server already started")
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("telemetry: admin listener: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminMaxHeaderBytes,
	}
	s.serveErr = make(chan error, 1)
	srv := s.srv
	go func() { s.serveErr <- srv.Serve(ln) }()
	return nil
}

// Addr returns the bound address once started (useful with port 0), else the
// configured one.
func (s *AdminServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Shutdown stops accepting connections and waits, until ctx ends, for requests in
// flight. It is idempotent; after it, Start fails. It returns the error that ended
// serving, if any other than a normal close.
func (s *AdminServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	srv, serveErr := s.srv, s.serveErr
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		// Out of time: drop the remaining connections so no goroutine outlives us.
		err = errors.Join(fmt.Errorf("telemetry: admin shutdown: %w", err), srv.Close())
	}
	if e := <-serveErr; e != nil && !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("telemetry: admin serve: %w", e))
	}
	return err
}
