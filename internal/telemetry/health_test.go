package telemetry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHealthFailing(t *testing.T) {
	tests := []struct {
		name   string
		checks map[string]func() error
		want   []CheckResult
	}{
		{name: "no checks is ready", want: nil},
		{
			name:   "passing checks",
			checks: map[string]func() error{"svid": func() error { return nil }, "config": func() error { return nil }},
			want:   nil,
		},
		{
			name: "failing checks sorted by name",
			checks: map[string]func() error{
				"svid":   func() error { return errors.New("no SVID received yet") },
				"config": func() error { return nil },
				"jwks":   func() error { return errors.New("jwks https://idp.example.com: 503") },
			},
			want: []CheckResult{
				{Name: "jwks", Error: "jwks https://idp.example.com: 503"},
				{Name: "svid", Error: "no SVID received yet"},
			},
		},
		{
			name:   "panicking check fails without its panic value",
			checks: map[string]func() error{"boom": func() error { panic("secret=hunter2") }},
			want:   []CheckResult{{Name: "boom", Error: "check panicked"}},
		},
		{
			name:   "empty error text still explains",
			checks: map[string]func() error{"x": func() error { return errors.New("") }},
			want:   []CheckResult{{Name: "x", Error: "not ready"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHealth()
			for n, fn := range tt.checks {
				h.AddCheck(n, fn)
			}
			if diff := cmp.Diff(tt.want, h.Failing()); diff != "" {
				t.Errorf("Failing (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHealthCheckTimeout(t *testing.T) {
	h := NewHealth()
	h.timeout = 300 * time.Millisecond // long enough for "fine" to finish on a loaded machine
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) }) // lets the stuck check's goroutine end
	h.AddCheck("stuck", func() error { <-stuck; return nil })
	h.AddCheck("fine", func() error { return nil })
	start := time.Now()
	got := h.Failing()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Failing took %v with a 300ms timeout", d)
	}
	want := []CheckResult{{Name: "stuck", Error: "check timed out after 300ms"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Failing (-want +got):\n%s", diff)
	}
}

func TestHealthAddReplacesAndRemove(t *testing.T) {
	h := NewHealth()
	h.AddCheck("a", func() error { return errors.New("first") })
	h.AddCheck("a", func() error { return errors.New("second") })
	if diff := cmp.Diff([]CheckResult{{Name: "a", Error: "second"}}, h.Failing()); diff != "" {
		t.Errorf("after replace (-want +got):\n%s", diff)
	}
	h.RemoveCheck("a")
	if got := h.Failing(); got != nil {
		t.Errorf("after remove: %v, want ready", got)
	}
}

// TestScrub: readiness messages are visible to whoever reaches the admin port, so
// credentials that slip into error text are removed.
func TestScrub(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_x"
	tests := []struct {
		name, in, want string
	}{
		{name: "plain", in: "no SVID received yet", want: "no SVID received yet"},
		{name: "url userinfo", in: `get "https://user:p4ss@idp.example.com/jwks": 401`, want: `get "https://REDACTED@idp.example.com/jwks": 401`},
		{name: "bearer token", in: "upstream said: Authorization: Bearer abc.def", want: "upstream said: Authorization: Bearer REDACTED"},
		{name: "basic credentials", in: "basic dXNlcjpwYXNz rejected", want: "basic REDACTED rejected"},
		{name: "bare jwt", in: "token " + jwt + " expired", want: "token REDACTED expired"},
		{name: "secret pairs", in: "client_secret=s3cr3t, password: hunter2 api_key=k", want: "client_secret=REDACTED, password: REDACTED api_key=REDACTED"},
		{name: "query token", in: "GET /cb?code=1&access_token=xyz failed", want: "GET /cb?code=1&access_token=REDACTED failed"},
		{name: "control characters", in: "line1\nline2\x1b[31m", want: "line1 line2 [31m"},
		{name: "long message is capped", in: strings.Repeat("é", 150), want: strings.Repeat("é", 100) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scrub(tt.in); got != tt.want {
				t.Errorf("scrub(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}
