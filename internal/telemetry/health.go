package telemetry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultCheckTimeout bounds how long /readyz waits for one check. Checks should read
// state kept up to date in the background and return at once; the bound only keeps
// a stuck check from hanging the probe.
const DefaultCheckTimeout = 2 * time.Second

// maxMessageBytes keeps a failing check's message short: enough to act on, too
// short to carry a dump.
const maxMessageBytes = 200

// Health holds the named readiness checks. Liveness needs none: a process that
// can answer /healthz is alive.
type Health struct {
	mu      sync.RWMutex
	checks  map[string]func() error
	timeout time.Duration
}

// CheckResult is one failing check as /readyz reports it.
type CheckResult struct {
	Name  string `json:"name"`
	Error string `json:"error"`
}

// NewHealth returns a Health with no checks (ready).
func NewHealth() *Health {
	return &Health{checks: make(map[string]func() error), timeout: DefaultCheckTimeout}
}

// AddCheck adds or replaces the readiness check called name. fn returns nil when
// the component is ready. The error text is shown on /readyz (after scrubbing, see
// Failing), so it should name what is missing, never include credentials.
func (h *Health) AddCheck(name string, fn func() error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = fn
}

// RemoveCheck removes the check called name, if any.
func (h *Health) RemoveCheck(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.checks, name)
}

// Failing runs every check concurrently and returns the failing ones sorted by
// name; none means ready. A check that panics or outlives the timeout fails. Error
// texts are scrubbed before they leave: URL userinfo, bearer/basic credentials and
// JWT-shaped strings are replaced, control characters removed, length capped.
func (h *Health) Failing() []CheckResult {
	h.mu.RLock()
	names := make([]string, 0, len(h.checks))
	fns := make([]func() error, 0, len(h.checks))
	for n, fn := range h.checks {
		names = append(names, n)
		fns = append(fns, fn)
	}
	timeout := h.timeout
	h.mu.RUnlock()

	results := make(chan CheckResult, len(fns)) // buffered: a late check never blocks
	for i, fn := range fns {
		go func() {
			results <- CheckResult{Name: names[i], Error: runCheck(fn)}
		}()
	}
	got := make(map[string]string, len(fns))
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
wait:
	for range fns {
		select {
		case r := <-results:
			got[r.Name] = r.Error
		case <-deadline.C:
			break wait
		}
	}
	// Results that arrived together with the deadline count: select picks
	// among ready cases at random.
drain:
	for len(got) < len(fns) {
		select {
		case r := <-results:
			got[r.Name] = r.Error
		default:
			break drain
		}
	}
	var failing []CheckResult
	for _, n := range names {
		msg, done := got[n]
		switch {
		case !done:
			failing = append(failing, CheckResult{Name: n, Error: "check timed out after " + timeout.String()})
		case msg != "":
			failing = append(failing, CheckResult{Name: n, Error: msg})
		}
	}
	slices.SortFunc(failing, func(a, b CheckResult) int { return strings.Compare(a.Name, b.Name) })
	return failing
}

// runCheck returns "" on success, else the scrubbed error text.
func runCheck(fn func() error) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = "check panicked" // the panic value may hold anything
		}
	}()
	if err := fn(); err != nil {
		if msg = scrub(err.Error()); msg == "" {
			msg = "not ready"
		}
	}
	return msg
}

var (
	// userinfo in URLs: scheme://user:password@host
	userinfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@`)
	// Authorization-style credentials: "Bearer xyz", "Basic xyz"
	authSchemeRE = regexp.MustCompile(`(?i)\b(bearer|basic|dpop)\s+[^\s,;]+`)
	// compact JWS/JWE: base64url JSON header "eyJ" and at least two dots
	jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*`)
	// key=value pairs whose key names a secret
	secretKVRE = regexp.MustCompile(`(?i)\b(password|passwd|secret|client_secret|token|access_token|id_token|refresh_token|api_?key)(\s*[=:]\s*)[^\s&,;]+`)
)

// scrub removes what commonly leaks secrets into error text. It is a safety net
// for a page that operators (and, if misconfigured, others) can read; check authors
// still must not put secrets into errors.
func scrub(s string) string {
	s = userinfoRE.ReplaceAllString(s, "${1}REDACTED@")
	s = authSchemeRE.ReplaceAllString(s, "${1} REDACTED")
	s = jwtRE.ReplaceAllString(s, "REDACTED")
	s = secretKVRE.ReplaceAllString(s, "${1}${2}REDACTED")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxMessageBytes {
		cut := maxMessageBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.TrimSpace(s)
}

// readyBody is the JSON /readyz answers with.
type readyBody struct {
	Status  string        `json:"status"`
	Failing []CheckResult `json:"failing,omitempty"`
}

// LiveHandler answers /healthz: 200 "ok" while the process can serve HTTP at all.
func (h *Health) LiveHandler() http.Handler {
	return getOnly(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "ok\n")
	})
}

// ReadyHandler answers /readyz: 200 {"status":"ok"} when every check passes, else
// 503 {"status":"unavailable","failing":[{"name":...,"error":...}]}.
func (h *Health) ReadyHandler() http.Handler {
	return getOnly(func(w http.ResponseWriter, _ *http.Request) {
		failing := h.Failing()
		body := readyBody{Status: "ok", Failing: failing}
		code := http.StatusOK
		if len(failing) > 0 {
			body.Status = "unavailable"
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body) // the prober may have gone; nothing to do
	})
}

func getOnly(f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f(w, r)
	})
}
