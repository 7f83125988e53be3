package egress

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"tollgate.dev/tollgate/internal/testkit"
)

// writeSecretFile writes content to a new file under dir and returns its path.
func writeSecretFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenServer is a client-credentials token endpoint that counts its
// fetches and issues "tok-<n>".
type tokenServer struct {
	clientID  string
	secret    atomic.Pointer[string] // the one it accepts
	expiresIn int                    // 0: no expires_in in the answer
	fail      atomic.Bool            // answer 500
	// release, if set, holds every answer until it is closed (or the
	// request goes away).
	release chan struct{}

	fetches atomic.Int32
	mu      sync.Mutex
	scopes  []string
	params  []string
}

func newTokenServer(clientID, secret string, expiresIn int) *tokenServer {
	ts := &tokenServer{clientID: clientID, expiresIn: expiresIn}
	ts.secret.Store(&secret)
	return ts
}

func (ts *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := ts.fetches.Add(1)
	if ts.release != nil {
		select {
		case <-ts.release:
		case <-r.Context().Done():
			return
		}
	}
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	ts.mu.Lock()
	ts.scopes = append(ts.scopes, r.PostForm.Get("scope"))
	ts.params = append(ts.params, r.PostForm.Get("audience"))
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	id, sec, ok := r.BasicAuth()
	switch {
	case ts.fail.Load():
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"error":"server_error","error_description":"down; you sent %s"}`, sec)
		return
	case !ok || id != ts.clientID || sec != *ts.secret.Load():
		// Echo the secret, as careless servers do: it must not reach the
		// gateway's error.
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":"wrong secret %s"}`, sec)
		return
	}
	body := map[string]any{"access_token": fmt.Sprintf("tok-%d", n), "token_type": "bearer"}
	if ts.expiresIn != 0 {
		body["expires_in"] = ts.expiresIn
	}
	_ = json.NewEncoder(w).Encode(body)
}

// handlerTransport serves requests with a handler in process: no sockets,
// so a synctest bubble's clock can run while a fetch is in progress.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	if err := r.Context().Err(); err != nil {
		return nil, err // as a real transport does when the request goes away
	}
	return rec.Result(), nil
}

// newCreds builds Credentials and closes them when the test ends.
func newCreds(t *testing.T, opts CredentialOptions) *Credentials {
	t.Helper()
	c, err := NewCredentials(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewCredentialsRefuses(t *testing.T) {
	dir := t.TempDir()
	good := writeSecretFile(t, dir, "good", "k-123\n")
	secretFile := writeSecretFile(t, dir, "secret", "s3cr3t\n")
	oauth := func(tweak func(*OAuth2Options)) *OAuth2Options {
		o := &OAuth2Options{TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecretFile: secretFile}
		tweak(o)
		return o
	}
	tests := []struct {
		name    string
		opts    CredentialOptions
		wantErr string
	}{
		{name: "nothing configured", wantErr: "no headers and no oauth2 configured"},
		{
			name:    "invalid header name",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X Api Key", File: good}}},
			wantErr: `headers[0]: invalid header name "X Api Key"`,
		},
		{
			name:    "framing header",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "transfer-encoding", File: good}}},
			wantErr: "header Transfer-Encoding can't be injected",
		},
		{
			name:    "host header",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "Host", File: good}}},
			wantErr: "header Host can't be injected",
		},
		{
			name:    "same header twice in two spellings",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: good}, {Name: "x-api-key", File: good}}},
			wantErr: "headers[1]: header X-Api-Key is set twice",
		},
		{
			name: "oauth2 header also set from a file",
			opts: CredentialOptions{
				Headers: []HeaderFromFile{{Name: "authorization", File: good}},
				OAuth2:  oauth(func(*OAuth2Options) {}),
			},
			wantErr: "oauth2: header Authorization is set twice",
		},
		{
			name:    "missing file",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: filepath.Join(dir, "nope")}}},
			wantErr: "no such file or directory",
		},
		{
			name:    "no file named",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key"}}},
			wantErr: "header X-Api-Key: file is required",
		},
		{
			name:    "empty file",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: writeSecretFile(t, dir, "empty", "")}}},
			wantErr: "empty",
		},
		{
			name:    "only a newline",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: writeSecretFile(t, dir, "nl", "\n")}}},
			wantErr: "empty",
		},
		{
			// Header injection: the value would end X-Api-Key and add a header.
			name:    "CRLF inside the value",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: writeSecretFile(t, dir, "crlf", "k-1\r\nX-Admin: yes\n")}}},
			wantErr: "control character 0x0d at byte 3",
		},
		{
			name:    "LF inside the value",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: writeSecretFile(t, dir, "lf", "k-1\nX-Admin: yes")}}},
			wantErr: "control character 0x0a at byte 3",
		},
		{
			name:    "two trailing newlines",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: writeSecretFile(t, dir, "nlnl", "k-1\n\n")}}},
			wantErr: "control character 0x0a at byte 3",
		},
		{
			name:    "NUL",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: writeSecretFile(t, dir, "nul", "k\x001")}}},
			wantErr: "control character 0x00 at byte 1",
		},
		{
			name:    "CR in the prefix",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: good, Prefix: "Key\r\n"}}},
			wantErr: "prefix: control character 0x0d",
		},
		{
			name:    "directory",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: dir}}},
			wantErr: "not a regular file",
		},
		{
			name:    "negative poll interval",
			opts:    CredentialOptions{Headers: []HeaderFromFile{{Name: "X-Api-Key", File: good}}, PollInterval: -1},
			wantErr: "negative poll interval",
		},
		{
			name:    "token URL in clear to another host",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.TokenURL = "http://idp.example/token" })},
			wantErr: "http sends the client secret in clear",
		},
		{
			name:    "token URL with userinfo",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.TokenURL = "https://gw:pw@idp.example/token" })},
			wantErr: "userinfo is not allowed",
		},
		{
			name:    "token URL scheme",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.TokenURL = "ftp://idp.example/token" })},
			wantErr: `scheme "ftp" (want https)`,
		},
		{
			name:    "no token URL",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.TokenURL = "" })},
			wantErr: "token URL is required",
		},
		{
			name:    "no client ID",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.ClientID = "" })},
			wantErr: "client ID is required",
		},
		{
			name:    "no client secret file",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.ClientSecretFile = "" })},
			wantErr: "client secret file is required",
		},
		{
			name:    "empty client secret",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.ClientSecretFile = writeSecretFile(t, dir, "blank", " \n") })},
			wantErr: "client secret file " + filepath.Join(dir, "blank") + " is empty",
		},
		{
			name:    "negative refreshBefore",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.RefreshBefore = -time.Second })},
			wantErr: "negative refreshBefore",
		},
		{
			name:    "client secret in the endpoint parameters",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.EndpointParams = map[string][]string{"client_secret": {"x"}} })},
			wantErr: `endpoint parameter "client_secret" is set by the grant itself`,
		},
		{
			name:    "oauth2 header that can't be injected",
			opts:    CredentialOptions{OAuth2: oauth(func(o *OAuth2Options) { o.Header = "Content-Length" })},
			wantErr: "header Content-Length can't be injected",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCredentials(tt.opts)
			if err == nil {
				c.Close()
				t.Fatalf("NewCredentials succeeded, want error %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
			}
			for _, s := range []string{"k-1", "X-Admin", "s3cr3t"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q shows file content %q", err, s)
				}
			}
		})
	}
}

func TestCredentialsApplyReplacesClientCopies(t *testing.T) {
	dir := t.TempDir()
	c := newCreds(t, CredentialOptions{Headers: []HeaderFromFile{
		{Name: "x-api-key", File: writeSecretFile(t, dir, "key", "k-123\n")},
		{Name: "Authorization", File: writeSecretFile(t, dir, "tok", "t-456\r\n"), Prefix: "Token "},
	}})
	if got, want := c.Names(), []string{"X-Api-Key", "Authorization"}; !cmp.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	want := http.Header{
		"X-Api-Key":     {"k-123"},
		"Authorization": {"Token t-456"},
		"Accept":        {"application/json"},
	}
	tests := []struct {
		name   string
		client http.Header
	}{
		{name: "client sent none", client: http.Header{"Accept": {"application/json"}}},
		{name: "canonical copies", client: http.Header{
			"Accept": {"application/json"}, "X-Api-Key": {"stolen"}, "Authorization": {"Bearer mine", "Basic b"},
		}},
		{
			// Keys set directly on the map keep their spelling; a
			// destination still reads them as the same header.
			name: "copies in every case",
			client: http.Header{
				"Accept": {"application/json"}, "x-api-key": {"a"}, "X-API-KEY": {"b"}, "X-Api-Key": {"c"},
				"authorization": {"d"}, "AUTHORIZATION": {"e"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.client.Clone()
			if err := c.Apply(t.Context(), h); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, h); diff != "" {
				t.Errorf("header after Apply (-want +got):\n%s", diff)
			}
		})
	}
}

// waitReload waits for the next OnReload report about file.
func waitReload(t *testing.T, reloads <-chan reloadReport, file string) error {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-reloads:
			if r.file == file {
				return r.err
			}
		case <-timeout:
			t.Fatalf("no reload of %s within 10s", file)
		}
	}
}

type reloadReport struct {
	file string
	err  error
}

func TestCredentialsHeaderFileRotation(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, path, content string)
		// torn: the write truncates first, so a watcher on a loaded machine
		// may settle on the empty file in between: that report (refused,
		// the last good value kept) may come before the one for the
		// content.
		torn bool
	}{
		{name: "atomic rename", write: func(t *testing.T, path, content string) {
			testkit.WriteFileAtomic(t, path, []byte(content))
		}},
		{name: "in-place write", torn: true, write: func(t *testing.T, path, content string) {
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := writeSecretFile(t, dir, "key", "k-1\n")
			reloads := make(chan reloadReport, 16)
			c := newCreds(t, CredentialOptions{
				Headers:      []HeaderFromFile{{Name: "X-Api-Key", File: file, Prefix: "Key "}},
				PollInterval: 5 * time.Millisecond,
				Settle:       5 * time.Millisecond,
				OnReload:     func(f string, err error) { reloads <- reloadReport{f, err} },
			})
			injected := func() string {
				t.Helper()
				h := http.Header{}
				if err := c.Apply(t.Context(), h); err != nil {
					t.Fatal(err)
				}
				return h.Get("X-Api-Key")
			}
			if got := injected(); got != "Key k-1" {
				t.Fatalf("injected %q, want %q", got, "Key k-1")
			}
			steps := []struct {
				name    string
				do      func()
				wantErr string // "" : reload succeeds
				want    string
			}{
				{name: "rotated", do: func() { tt.write(t, file, "k-2\n") }, want: "Key k-2"},
				{name: "emptied", do: func() { tt.write(t, file, "") }, wantErr: "file " + file + ": empty", want: "Key k-2"},
				{name: "rotated again", do: func() { tt.write(t, file, "k-3") }, want: "Key k-3"},
				{
					name: "header injection", do: func() { tt.write(t, file, "k-4\r\nX-Admin: yes\n") },
					wantErr: "control character 0x0d at byte 3", want: "Key k-3",
				},
				{name: "removed", do: func() { os.Remove(file) }, wantErr: "no such file or directory", want: "Key k-3"},
				{name: "back", do: func() { tt.write(t, file, "k-5\n") }, want: "Key k-5"},
			}
			for _, s := range steps {
				s.do()
				err := waitReload(t, reloads, file)
				for i := 0; tt.torn && i < 5 && err != nil && strings.Contains(err.Error(), ": empty") && !strings.Contains(s.wantErr, ": empty"); i++ {
					if got := injected(); got == "" || strings.Contains(got, "\r") {
						t.Fatalf("%s: a torn read was injected: %q", s.name, got)
					}
					err = waitReload(t, reloads, file)
				}
				switch {
				case s.wantErr == "" && err != nil:
					t.Fatalf("%s: reload error %v", s.name, err)
				case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
					t.Fatalf("%s: reload error %v, want one containing %q", s.name, err, s.wantErr)
				case err != nil && strings.Contains(err.Error(), "k-4"):
					t.Fatalf("%s: reload error %q shows the file's content", s.name, err)
				}
				if got := injected(); got != s.want {
					t.Fatalf("%s: injected %q, want %q", s.name, got, s.want)
				}
			}
		})
	}
}

// oauthCreds builds Credentials with an OAuth2 token from ts, served by the
// in-process transport unless tokenURL is given.
func oauthCreds(t *testing.T, ts *tokenServer, tweak func(*OAuth2Options)) *Credentials {
	t.Helper()
	o := &OAuth2Options{
		TokenURL:         "https://idp.test/token",
		ClientID:         ts.clientID,
		ClientSecretFile: writeSecretFile(t, t.TempDir(), "secret", *ts.secret.Load()+"\n"),
		AuthStyle:        oauth2.AuthStyleInHeader,
		HTTPClient:       &http.Client{Transport: handlerTransport{ts}},
	}
	if tweak != nil {
		tweak(o)
	}
	return newCreds(t, CredentialOptions{OAuth2: o})
}

func TestCredentialsOAuth2OneFetchForConcurrentApply(t *testing.T) {
	ts := newTokenServer("gw", "s3cr3t", 3600)
	ts.release = make(chan struct{})
	srv := httptest.NewServer(ts) // 127.0.0.1
	defer srv.Close()
	c := oauthCreds(t, ts, func(o *OAuth2Options) {
		o.TokenURL = srv.URL + "/token"
		o.HTTPClient = nil // the gateway's own client, over loopback
		o.Scopes = []string{"api:read", "api:write"}
		o.EndpointParams = map[string][]string{"audience": {"https://api.example"}}
	})

	const callers = 50
	got := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			h := http.Header{"Authorization": {"Bearer workload-own"}}
			errs[i] = c.Apply(t.Context(), h)
			got[i] = strings.Join(h.Values("Authorization"), ",")
		})
	}
	// Hold the token answer until the first fetch has arrived and the
	// others have had time to queue behind it; a second fetch would arrive
	// meanwhile, and any caller that comes later finds the token cached.
	deadline := time.Now().Add(10 * time.Second)
	for ts.fetches.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(ts.release)
	wg.Wait()

	if n := ts.fetches.Load(); n != 1 {
		t.Errorf("%d concurrent Apply calls made %d token requests, want 1", callers, n)
	}
	for i := range callers {
		if errs[i] != nil || got[i] != "Bearer tok-1" {
			t.Fatalf("caller %d: Authorization %q, error %v; want %q", i, got[i], errs[i], "Bearer tok-1")
		}
	}
	if diff := cmp.Diff([]string{"api:read api:write"}, ts.scopes); diff != "" {
		t.Errorf("scope sent (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"https://api.example"}, ts.params); diff != "" {
		t.Errorf("endpoint parameter sent (-want +got):\n%s", diff)
	}
}
