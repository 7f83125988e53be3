package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Credential injection: a destination can carry headers whose values the
// gateway adds after authorization, so the workload never holds the secret.
// A value comes from a file (an API key, reloaded when the file changes) or
// is an OAuth2 access token the gateway obtains itself with the
// client-credentials grant. Client-sent copies of those headers are removed
// first, and the values never reach logs, metrics or audit records: every
// type that holds one prints "[redacted]".

// CredentialOptions configure [NewCredentials].
type CredentialOptions struct {
	// Headers are set from files.
	Headers []HeaderFromFile
	// OAuth2, if set, sets a header (Authorization by default) to an access
	// token obtained with the client-credentials grant.
	OAuth2 *OAuth2Options
	// PollInterval is how often the files (header files and the client
	// secret file) are checked for changes; zero means
	// [filewatch.DefaultInterval].
	PollInterval time.Duration
	// Settle is how long a changed file must hold still before its new
	// content is taken; zero means [filewatch.DefaultSettle].
	Settle time.Duration
	// OnReload, if set, is called after each settled change of a file: err
	// is nil when the new value is already being injected, otherwise the
	// last good value stays in force and err says why (it names the file,
	// never its content). A file that stays broken is reported once. It is
	// called from a watcher's goroutine, and must not call Close.
	OnReload func(file string, err error)
}

// HeaderFromFile is a header whose value is read from a file.
type HeaderFromFile struct {
	// Name is the header's name (X-Api-Key).
	Name string
	// File holds the value. One trailing newline is ignored; a file that
	// is empty or holds a control character (CR, LF: header injection) is
	// refused.
	File string
	// Prefix is put before the file's content ("Bearer ", "Token ").
	Prefix string
}

// Credentials injects the configured headers into outbound requests. It is
// safe for concurrent use; call Close to stop watching the files.
type Credentials struct {
	files []*headerFile
	token *tokenSource // nil without OAuth2
	names []string     // canonical, in configuration order

	closeOnce sync.Once
}

// ErrCredentialUnavailable is matched (errors.Is) by every error [Credentials.Apply]
// returns: the request must not go out, and the client gets a 502.
var ErrCredentialUnavailable = errors.New("egress: credential unavailable")

// CredentialError says which injected header could not be produced and why.
// It never carries a secret: not the file's content, not the client secret,
// not a token, and not a token endpoint's response body (which may echo
// what was sent).
type CredentialError struct {
	// Header is the header that could not be set.
	Header string
	// Source is where its value comes from: a file path or the token
	// endpoint URL.
	Source string
	// Err is the cause, stripped of anything secret.
	Err error
}

func (e *CredentialError) Error() string {
	return fmt.Sprintf("egress: credential for header %s from %s: %v", e.Header, e.Source, e.Err)
}

func (e *CredentialError) Unwrap() error { return e.Err }

// Is makes every CredentialError match [ErrCredentialUnavailable].
func (e *CredentialError) Is(target error) bool { return target == ErrCredentialUnavailable }

// refusedHeaders are names a credential may not set: the hop-by-hop and
// framing headers (setting them would smuggle a second request or break the
// connection to the destination) and Host (it would send the request
// somewhere other than where policy judged it).
var refusedHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	"Host": true, "Proxy-Authorization": true, "Proxy-Authenticate": true,
}

// NewCredentials reads every file once, failing if any is missing, empty or
// invalid, and starts watching them. It does not contact the token endpoint:
// the first Apply does.
func NewCredentials(opts CredentialOptions) (*Credentials, error) {
	switch {
	case len(opts.Headers) == 0 && opts.OAuth2 == nil:
		return nil, errors.New("egress: credentials: no headers and no oauth2 configured")
	case opts.PollInterval < 0:
		return nil, fmt.Errorf("egress: credentials: negative poll interval %s", opts.PollInterval)
	case opts.Settle < 0:
		return nil, fmt.Errorf("egress: credentials: negative settle interval %s", opts.Settle)
	}
	c := &Credentials{}
	seen := make(map[string]bool)
	claim := func(what, name string) (string, error) {
		if !httpguts.ValidHeaderFieldName(name) {
			return "", fmt.Errorf("egress: credentials: %s: invalid header name %q", what, name)
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if refusedHeaders[canon] {
			return "", fmt.Errorf("egress: credentials: %s: header %s can't be injected (hop-by-hop, framing or routing header)", what, canon)
		}
		if seen[canon] {
			return "", fmt.Errorf("egress: credentials: %s: header %s is set twice", what, canon)
		}
		seen[canon] = true
		c.names = append(c.names, canon)
		return canon, nil
	}
	for i, h := range opts.Headers {
		what := fmt.Sprintf("headers[%d]", i)
		name, err := claim(what, h.Name)
		if err != nil {
			c.Close()
			return nil, err
		}
		f, err := newHeaderFile(name, h, opts)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("egress: credentials: %s: %w", what, err)
		}
		c.files = append(c.files, f)
	}
	if o := opts.OAuth2; o != nil {
		header := o.Header
		if header == "" {
			header = "Authorization"
		}
		name, err := claim("oauth2", header)
		if err != nil {
			c.Close()
			return nil, err
		}
		ts, err := newTokenSource(name, *o, opts)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("egress: credentials: oauth2: %w", err)
		}
		c.token = ts
	}
	return c, nil
}

// Names returns the canonical names of the headers c sets. The proxy strips
// them from the client's request before policy sees it, and redacts them
// wherever a request is recorded.
func (c *Credentials) Names() []string {
	return append([]string(nil), c.names...)
}

// Apply removes every client-sent copy of the headers c owns, in any
// spelling of the name, then sets the injected values. Call it after
// authorization, on the outbound request's header. An error (the token
// endpoint failed, c is closed) is a [*CredentialError] matching
// [ErrCredentialUnavailable]: the request must fail closed, with the
// client-sent copies already gone.
func (c *Credentials) Apply(ctx context.Context, h http.Header) error {
	// A client that sends its own Authorization or X-Api-Key must not reach
	// the destination with it (or as a second value beside ours): strip
	// first, whatever happens next. http.Header keys are canonical when
	// parsed, but code can set a key directly in any case, and a
	// destination would read "x-api-key" as the same header.
	for k := range h {
		for _, n := range c.names {
			if strings.EqualFold(k, n) {
				delete(h, k)
				break
			}
		}
	}
	for _, f := range c.files {
		h[f.name] = []string{f.value.Load().v}
	}
	if c.token != nil {
		v, err := c.token.value(ctx)
		if err != nil {
			return err
		}
		h[c.token.header] = []string{v.v}
	}
	return nil
}

// Close stops watching the files and waits for a token fetch in progress. It
// is idempotent. After Close, values already held are still injected, but a
// token that needs fetching is an error.
func (c *Credentials) Close() error {
	c.closeOnce.Do(func() {
		for _, f := range c.files {
			f.close()
		}
		if c.token != nil {
			c.token.close()
		}
	})
	return nil
}

// String names the headers, never their values.
func (c *Credentials) String() string {
	if c == nil {
		return "egress.Credentials(nil)"
	}
	var b strings.Builder
	b.WriteString("egress.Credentials{")
	for i, n := range c.names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n)
		b.WriteString(": ")
		b.WriteString(redacted)
	}
	b.WriteString("}")
	return b.String()
}

// GoString is String: %#v must not print the fields.
func (c *Credentials) GoString() string { return c.String() }

// Format prints String for every verb, so no verb or flag (%x, %+v, %#v)
// reaches the fields by reflection.
func (c *Credentials) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

// LogValue names the headers, never their values.
func (c *Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// redacted is what every secret prints as.
const redacted = "[redacted]"

// secret is a header value or a client secret. Held behind a pointer, it
// prints as "[redacted]" however it is formatted, logged or marshalled.
type secret struct{ v string }

func (s *secret) String() string               { return redacted }
func (s *secret) GoString() string             { return redacted }
func (s *secret) Format(f fmt.State, _ rune)   { fmt.Fprint(f, redacted) }
func (s *secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s *secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (s *secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// checkValue refuses what must never go into a header value: nothing at all,
// and control characters. CR or LF would end the header and start another
// (header injection, or a smuggled request); NUL and the rest are refused by
// servers or truncate the value in some. The position is reported, never the
// value.
func checkValue(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("control character 0x%02x at byte %d (a value must be one line)", c, i)
		}
	}
	return nil
}
