package egress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// However Credentials (or a struct holding them) is printed, logged or
// marshalled, no file value, client secret or token comes out.
func TestCredentialsNeverPrintSecrets(t *testing.T) {
	const fileSecret, clientSecret = "k-FILE-SECRET", "cs-CLIENT-SECRET"
	ts := newTokenServer("gw", clientSecret, 3600)
	c := oauthCreds(t, ts, func(o *OAuth2Options) { o.Header = "X-Upstream-Token" })
	c2 := newCreds(t, CredentialOptions{Headers: []HeaderFromFile{
		{Name: "X-Api-Key", File: writeSecretFile(t, t.TempDir(), "key", fileSecret+"\n")},
	}})
	for _, c := range []*Credentials{c, c2} {
		// Fetch the token, so it is held.
		if err := c.Apply(t.Context(), http.Header{}); err != nil {
			t.Fatal(err)
		}
	}
	if ts.fetches.Load() != 1 {
		t.Fatalf("%d token requests, want 1", ts.fetches.Load())
	}
	type holder struct {
		Creds *Credentials
		creds *Credentials
	}
	var outputs []string
	for _, v := range []any{c, c2, holder{c, c}, &holder{c2, c2}, []*Credentials{c, c2}, map[string]*Credentials{"a": c}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%T"} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		outputs = append(outputs, string(b))
		var logs bytes.Buffer
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("creds", "c", v, slog.Any("any", v))
		slog.New(slog.NewTextHandler(&logs, nil)).Info("creds", "c", v)
		outputs = append(outputs, logs.String())
	}
	// The types inside hold the values: they print redacted too.
	for _, v := range []any{c.token.cached, c.token.cached.value, c2.files[0].value.Load(), c.token, c2.files[0]} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
	}
	for _, out := range outputs {
		for _, s := range []string{fileSecret, clientSecret, "tok-1"} {
			if strings.Contains(out, s) {
				t.Errorf("output shows a secret (%s):\n%s", s, out)
			}
		}
	}
	if got, want := c.String(), "egress.Credentials{X-Upstream-Token: [redacted]}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := fmt.Sprintf("%+v", c2), "egress.Credentials{X-Api-Key: [redacted]}"; got != want {
		t.Errorf("%%+v = %q, want %q", got, want)
	}
}
