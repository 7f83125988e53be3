package exchange

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCheckFormBody(t *testing.T) {
	mp := func(parts ...string) string {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString("--XyZ\r\n" + p + "\r\n")
		}
		b.WriteString("--XyZ--\r\n")
		return b.String()
	}
	field := func(disposition, value string) string {
		return "Content-Disposition: " + disposition + "\r\n\r\n" + value
	}
	const multipartType = "multipart/form-data; boundary=XyZ"
	tests := []struct {
		name, contentType, body string
		wantStatus              int  // from checkFormBody
		wantReadErr             bool // reading the body through fails
	}{
		{name: "urlencoded, plain", contentType: "application/x-www-form-urlencoded", body: "a=1&b=2"},
		{name: "urlencoded, _method", contentType: "application/x-www-form-urlencoded", body: "a=1&_method=DELETE", wantStatus: 400},
		{name: "urlencoded, escaped and spaced", contentType: "application/x-www-form-urlencoded; charset=utf-8", body: "a=1&%20_%6Dethod=DELETE", wantStatus: 400},
		{name: "urlencoded, ';' separated", contentType: "application/x-www-form-urlencoded", body: "a=1;_method=DELETE", wantStatus: 400},
		{name: "urlencoded, header override name", contentType: "application/x-www-form-urlencoded", body: "X-HTTP-Method-Override=PUT", wantStatus: 400},
		{name: "urlencoded, too large to check", contentType: "application/x-www-form-urlencoded", body: strings.Repeat("a", maxFormScan+1), wantStatus: 413},
		{name: "json is not a form", contentType: "application/json", body: `{"_method":"DELETE"}`},
		{name: "multipart, plain", contentType: multipartType, body: mp(field(`form-data; name="a"`, "1"), field(`form-data; name="f"; filename="x.txt"`, "_method=DELETE"))},
		{name: "multipart, _method", contentType: multipartType, body: mp(field(`form-data; name="a"`, "1"), field(`form-data; name="_method"`, "DELETE")), wantReadErr: true},
		{name: "multipart, unquoted, upper case", contentType: multipartType, body: mp(field(`form-data; NAME=_METHOD`, "DELETE")), wantReadErr: true},
		{name: "multipart, folded header", contentType: multipartType, body: mp("Content-Disposition: form-data;\r\n name=\"_method\"\r\n\r\nDELETE"), wantReadErr: true},
		{name: "multipart, PHP spelling", contentType: multipartType, body: mp(field(`form-data; name=" .method"`, "DELETE")), wantReadErr: true},
		{name: "multipart, no boundary", contentType: "multipart/form-data", body: "x", wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
				r.Header.Set("Content-Type", tc.contentType)
				if oneByte {
					// Header lines split across reads must be caught too.
					r.Body = io.NopCloser(iotest.OneByteReader(strings.NewReader(tc.body)))
				}
				if got := checkFormBody(r); got != tc.wantStatus {
					t.Fatalf("oneByte=%v: status %d, want %d", oneByte, got, tc.wantStatus)
				}
				if tc.wantStatus != 0 {
					continue
				}
				got, err := io.ReadAll(r.Body)
				if tc.wantReadErr {
					if !errors.Is(err, ErrMethodOverrideInBody) {
						t.Fatalf("oneByte=%v: read error %v, want ErrMethodOverrideInBody", oneByte, err)
					}
					// The part header naming the override never went on whole.
					if bytes.Contains(got, []byte("DELETE")) {
						t.Errorf("oneByte=%v: the override's value was handed on: %q", oneByte, got)
					}
					continue
				}
				if err != nil || string(got) != tc.body {
					t.Errorf("oneByte=%v: body changed or failed (%v): %q", oneByte, err, got)
				}
			}
		})
	}
}

// An override form through a front: 400, and the upstream never gets the
// request (URL-encoded) or never gets it whole (multipart).
func TestBeginRefusesOverrideForm(t *testing.T) {
	f := New(Options{Name: "ingress"})
	r := httptest.NewRequest("POST", "/x", strings.NewReader("_method=DELETE"))
	r.Host = "a.example"
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	x, ok, w := begin(f, r, "198.51.100.1:1")
	x.Finish()
	if ok || w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "method override") {
		t.Fatalf("ok=%v %d %s", ok, w.Code, w.Body)
	}
}
