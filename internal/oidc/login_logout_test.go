package oidc

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestLogoutCSRF: only a same-origin POST ends a session. Another site's
// <img src>, link or auto-submitted form used to sign the user out with a GET.
func TestLogoutCSRF(t *testing.T) {
	idp := startIdP(t, nil, "https://idp.invalid/session/end")
	g := startGateway(t, idp, func(c *LoginConfig) { c.Provider.PostLogoutRedirectPath = "/.tollgate/oidc/signed-out" })
	if err := g.login.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	const (
		page = "text/html,application/xhtml+xml"
		img  = "image/avif,image/webp,*/*"
	)
	otherPort := "https://127.0.0.1:1" // same host name, another origin
	tests := []struct {
		name       string
		method     string
		accept     string
		hdr        []string
		wantStatus int
		wantCode   string // the JSON error's code; "" for no error
		wantEnded  bool
	}{
		{name: "page load shows the form", method: "GET", accept: page, hdr: []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "none"}, wantStatus: 200},
		{name: "link from another site shows the form", method: "GET", accept: page, hdr: []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "cross-site"}, wantStatus: 200},
		{name: "HEAD page load", method: "HEAD", accept: page, wantStatus: 200},
		{name: "img src from another site", method: "GET", accept: img, hdr: []string{"Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image", "Sec-Fetch-Site", "cross-site"}, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "fetch GET asking for HTML", method: "GET", accept: page, hdr: []string{"Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "same-origin"}, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "GET without Accept", method: "GET", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "PUT", method: "PUT", accept: page, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "DELETE", method: "DELETE", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "OPTIONS", method: "OPTIONS", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "POST from another site", method: "POST", accept: page, hdr: []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, wantStatus: 403, wantCode: "cross_origin"},
		{name: "POST from a sibling site", method: "POST", accept: page, hdr: []string{"Sec-Fetch-Site", "same-site", "Origin", otherPort}, wantStatus: 403, wantCode: "cross_origin"},
		{name: "POST cross-site with our Origin", method: "POST", accept: page, hdr: []string{"Sec-Fetch-Site", "cross-site", "Origin", g.url}, wantStatus: 403, wantCode: "cross_origin"},
		{name: "POST, old browser, another Origin", method: "POST", accept: page, hdr: []string{"Origin", "https://evil.example"}, wantStatus: 403, wantCode: "cross_origin"},
		{name: "POST, old browser, another port", method: "POST", accept: page, hdr: []string{"Origin", otherPort}, wantStatus: 403, wantCode: "cross_origin"},
		{name: "POST, Origin null", method: "POST", accept: page, hdr: []string{"Origin", "null"}, wantStatus: 403, wantCode: "cross_origin"},
		{name: "POST same-origin", method: "POST", accept: page, hdr: []string{"Sec-Fetch-Site", "same-origin", "Origin", g.url}, wantStatus: 303, wantEnded: true},
		{name: "POST, old browser, our Origin", method: "POST", accept: page, hdr: []string{"Origin", g.url}, wantStatus: 303, wantEnded: true},
		{name: "POST typed by the user", method: "POST", accept: page, hdr: []string{"Sec-Fetch-Site", "none"}, wantStatus: 303, wantEnded: true},
		{name: "POST by no browser", method: "POST", wantStatus: 303, wantEnded: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t, g)
			login(t, g, idp, b, alice)
			refused := g.events.count("logout/refused")
			resp, body := b.do(tc.method, g.url+"/.tollgate/oidc/logout", tc.accept, tc.hdr...)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantCode != "" {
				var e struct{ Error, Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error != tc.wantCode || e.Message == "" {
					t.Errorf("body %s (%v), want the JSON error %q", body, err, tc.wantCode)
				}
				if got := g.events.count("logout/refused"); got != refused+1 {
					t.Errorf("logout/refused events %d, want %d", got, refused+1)
				}
			}
			if allow := resp.Header.Get("Allow"); (tc.wantStatus == 405) != (allow == "POST") {
				t.Errorf("Allow %q for status %d", allow, tc.wantStatus)
			}
			if tc.wantEnded {
				if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "https://idp.invalid/session/end?") {
					t.Errorf("logout sent the browser to %q, want the provider's end-session endpoint", loc)
				}
			} else if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("refused logout sets cookies: %q", sc)
			}
			// The session is gone exactly when the logout was accepted.
			after, _ := b.get(g.url + "/app")
			if ended := after.StatusCode == http.StatusFound; ended != tc.wantEnded {
				t.Errorf("after the request: /app %d, want session ended=%v", after.StatusCode, tc.wantEnded)
			}
		})
	}
}

var formTag = regexp.MustCompile(`<form method="post" action="([^"]*)">`)

// TestLogoutPage: the page a browser gets on GET holds a form that POSTs the
// logout, no script, and can't be framed (a click on a framed button would be
// same-origin: clickjacking). Submitting it as a browser does ends the session.
func TestLogoutPage(t *testing.T) {
	idp := startIdP(t, nil, "")
	g := startGateway(t, idp, nil)
	b := newBrowser(t, g)
	login(t, g, idp, b, alice)
	resp, body := b.get(g.url + "/.tollgate/oidc/logout")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout page: %d %s", resp.StatusCode, body)
	}
	for name, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-store",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; base-uri 'none'; frame-ancestors 'none'",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s %q, want %q", name, got, want)
		}
	}
	m := formTag.FindStringSubmatch(string(body))
	if m == nil || m[1] != "/.tollgate/oidc/logout" || !strings.Contains(string(body), `<button type="submit" id="sign-out">`) {
		t.Fatalf("page has no form POSTing the logout: %s", body)
	}
	if strings.Contains(strings.ToLower(string(body)), "<script") {
		t.Errorf("page has a script: %s", body)
	}
	if after, _ := b.get(g.url + "/app"); after.StatusCode != http.StatusOK {
		t.Fatalf("showing the logout page ended the session: /app %d", after.StatusCode)
	}
	// Submit the form as the browser would: POST to its action, same-origin.
	resp, _ = b.do(http.MethodPost, g.url+m[1], "text/html", "Origin", g.url, "Sec-Fetch-Site", "same-origin",
		"Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/.tollgate/oidc/signed-out" {
		t.Fatalf("submitting the form: %d to %q, want 303 to the signed-out page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if after, _ := b.get(g.url + "/app"); after.StatusCode != http.StatusFound {
		t.Errorf("after submitting the form: /app %d, want 302 to log in", after.StatusCode)
	}
	if n := g.events.count("logout/success"); n != 1 {
		t.Errorf("logout/success events %d, want 1", n)
	}
}

// TestLogoutPageEscapesPrefix: the form's action is the configured prefix,
// HTML-escaped, so an odd prefix can't inject markup into the page.
func TestLogoutPageEscapesPrefix(t *testing.T) {
	idp := startIdP(t, nil, "")
	const prefix = `/t"><script>x</script>/`
	g := startGateway(t, idp, func(c *LoginConfig) { c.PathPrefix = prefix })
	r := httptestRequest(http.MethodGet, "https://"+g.srv.Listener.Addr().String()+"/", "text/html")
	r.URL.Path = prefix + "oidc/logout"
	rec := newRecorder()
	if !g.login.ServeReserved(rec, r) || rec.Code != http.StatusOK {
		t.Fatalf("logout page under %q: %d %s", prefix, rec.Code, rec.Body)
	}
	if body := rec.Body.String(); strings.Contains(body, "<script>") || !strings.Contains(body, `action="/t&#34;&gt;&lt;script&gt;x&lt;/script&gt;/oidc/logout"`) {
		t.Errorf("prefix not escaped: %s", body)
	}
}
