package dev

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCredentialHeader(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{name: "Authorization", want: true},
		{name: "Proxy-Authorization", want: true},
		{name: "Cookie", want: true},
		{name: "X-Api-Key", want: true},
		{name: "X-Auth-Token", want: true},
		{name: "Private-Token", want: true},
		{name: "X-Client-Secret", want: true},
		{name: "X-Amz-Signature", want: true},
		{name: "Accept", want: false},
		{name: "User-Agent", want: false},
		{name: "X-Request-Id", want: false},
	}
	for _, tc := range tests {
		if got := credentialHeader(tc.name); got != tc.want {
			t.Errorf("credentialHeader(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		in, want string
		secret   string // must not appear in the masked form
	}{
		{in: "sk-live-0123456789abcdef", want: "sk-l…(masked, 24 bytes)", secret: "0123456789abcdef"},
		{in: "Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig", want: "Bearer eyJh…(masked, 32 bytes)", secret: "payload"},
		{in: "Basic dXNlcjpwYXNz", want: "Basic …(masked, 12 bytes)", secret: "dXNl"},
		{in: "short", want: "…(masked, 5 bytes)", secret: "short"},
		{in: "", want: "…(masked, 0 bytes)"},
	}
	for _, tc := range tests {
		got := Mask(tc.in)
		if got != tc.want {
			t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.secret != "" && strings.Contains(got, tc.secret) {
			t.Errorf("Mask(%q) = %q shows %q", tc.in, got, tc.secret)
		}
	}
}

// The demo API answers with what it received, credential-looking headers
// masked and everything else as sent.
func TestServeAPIMasksCredentials(t *testing.T) {
	req := httptest.NewRequest("GET", "https://api.demo.test/v1/hello?x=1", nil)
	req.Header.Set("Authorization", "Bearer abcdefghijklmnopqrstuvwxyz")
	req.Header.Set("X-Trace", "t-1")
	rec := httptest.NewRecorder()
	serveAPI(rec, req)
	var a APIResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.Body.String(), "efghijklmnop") {
		t.Errorf("the answer shows the token: %s", rec.Body.String())
	}
	want := map[string][]string{
		"Authorization": {"Bearer abcd…(masked, 26 bytes)"},
		"X-Trace":       {"t-1"},
	}
	if d := cmp.Diff(want, a.Headers); d != "" {
		t.Errorf("headers (-want +got):\n%s", d)
	}
	if a.Path != "/v1/hello" || a.Query != "x=1" || a.Method != "GET" {
		t.Errorf("answer %+v", a)
	}
}
