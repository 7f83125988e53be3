package oidc

import (
	"html"
	"net/http"
	"net/url"
)

// sameOrigin is net/http's cross-origin check (Sec-Fetch-Site, else Origin
// against Host), with no trusted origins and no bypass. It is the one origin
// check of this package; the zero value is ready and safe for concurrent use.
var sameOrigin http.CrossOriginProtection

// logout answers <prefix>oidc/logout. Only a same-origin POST ends the
// session: a GET that did would let any site sign the user out with an
// <img src> or a link (logout CSRF), and a cross-origin POST is the same
// attack with a form.
//
//   - POST, same-origin (Sec-Fetch-Site same-origin or none; without it, an
//     Origin whose host is the request's Host; or neither header, which is no
//     browser): the session is cleared and the browser is sent (303) to the
//     provider's end_session_endpoint, or to the signed-out page;
//   - POST from another origin (Sec-Fetch-Site cross-site or same-site, an
//     Origin of another host, Origin null): 403 JSON, the session stays;
//   - GET or HEAD page load (isNavigation): a page whose only action is a
//     button in a form that POSTs here; no script submits it, and it can't be
//     framed (a click on a framed button would be same-origin);
//   - anything else: 405 JSON with Allow: POST.
func (l *Login) logout(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet, http.MethodHead:
		if isNavigation(r) {
			l.logoutPage(w)
			return
		}
		fallthrough
	default:
		l.event("logout", "refused")
		w.Header().Set("Allow", http.MethodPost)
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "logout takes POST; open this address in a browser to sign out")
		return
	}
	if err := sameOrigin.Check(r); err != nil {
		l.log.Info("cross-origin logout refused", "provider", l.cfg.Provider.Name, "error", err)
		l.event("logout", "refused")
		writeJSONError(w, http.StatusForbidden, "cross_origin", "sign out from a page of this site")
		return
	}
	l.endSession(w, r)
}

// logoutPage is what a browser that opens the logout address sees: a button
// that POSTs the same-origin logout. The CSP forbids scripts and framing
// (clickjacking), not form-action, which browsers also apply to the redirect
// to the provider.
func (l *Login) logoutPage(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	_, _ = w.Write([]byte(`<!doctype html><html lang="en"><meta charset="utf-8"><title>Sign out</title>` +
		`<form method="post" action="` + html.EscapeString(l.endpoint("logout")) + `">` +
		`<p>Sign out of this site?</p><button type="submit" id="sign-out">Sign out</button></form></html>` + "\n"))
}

// endSession clears the session and, when the provider has an
// end_session_endpoint, ends the provider's session too (RP-initiated logout
// with id_token_hint). 303 turns the POST into the GET both targets expect.
func (l *Login) endSession(w http.ResponseWriter, r *http.Request) {
	// The hint is best effort: a session whose tokens part is missing or not its
	// own is still signed out here, only without id_token_hint.
	var c sessionCookies
	var idToken []byte
	if s, err := l.readSession(r, &c); err == nil && s != nil {
		if t, err := l.openTokens(r, s, &c); err == nil {
			idToken = t.IDToken
		}
	}
	c.clear(w, true)
	// Logins under way end too: a tab finishing one later would sign the user in again.
	for _, p := range l.pendingLogins(r) {
		l.expireAttempt(w, p.id)
	}
	w.Header().Set("Cache-Control", "no-store")
	l.event("logout", "success")
	d := l.disc.Load()
	if d == nil || d.endSession == "" || !l.hostOK(r.Host) {
		http.Redirect(w, r, l.endpoint("signed-out"), http.StatusSeeOther)
		return
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		http.Redirect(w, r, l.endpoint("signed-out"), http.StatusSeeOther)
		return
	}
	q := u.Query()
	q.Set("client_id", l.cfg.Provider.ClientID)
	if len(idToken) > 0 {
		q.Set("id_token_hint", string(idToken))
	}
	if p := l.cfg.Provider.PostLogoutRedirectPath; p != "" {
		q.Set("post_logout_redirect_uri", "https://"+r.Host+p)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}
