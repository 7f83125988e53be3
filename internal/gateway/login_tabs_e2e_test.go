//go:build e2e

// Browser login in several tabs at once, through the real gateway, the real
// provider and Chromium (see login_e2e_test.go for the setup).
// Run: go test -tags e2e -run E2E ./internal/gateway/

package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/oidc/oidctest"
)

// TestE2EGatewayLoginTabs: two tabs of one browser (two targets in one browser
// context, so they share cookies) open a protected page without a session, so
// both are sent to the provider before either comes back; then each signs in,
// the tab that started last first, and each lands on its own page, logged in.
// With one login-state cookie per browser, the second start overwrote the
// first's, and the first tab's callback failed.
func TestE2EGatewayLoginTabs(t *testing.T) {
	x := startOIDCExample(t)
	tab1 := x.bctx
	tab2, cancel := chromedp.NewContext(tab1) // a new target, in the browser context of tab1
	defer cancel()
	// The first run opens the target and binds its life to the context it
	// gets: tab2 itself, not a context with a timeout.
	if err := chromedp.Do(tab2); err != nil {
		t.Fatalf("second tab: %v", err)
	}
	start := time.Now()

	// Both tabs meet the login: each is at the provider's login form, with its
	// own login under way.
	for i, tab := range []context.Context{tab1, tab2} {
		err := within(tab, 30*time.Second,
			chromedp.Navigate(fmt.Sprintf("%s/app?tab=%d", x.gw, i+1)),
			chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)))
		if err != nil {
			t.Fatalf("tab %d: want the provider's login form: %v (the tab shows %s)", i+1, err, shows(tab))
		}
	}
	if c1, c2 := chromedp.FromContext(tab1), chromedp.FromContext(tab2); c1.BrowserContextID != c2.BrowserContextID || c1.Target.TargetID == c2.Target.TargetID {
		t.Fatalf("tabs: targets %s and %s in browser contexts %q and %q, want two targets in one",
			c1.Target.TargetID, c2.Target.TargetID, c1.BrowserContextID, c2.BrowserContextID)
	}

	// Each signs in, the one that started last first.
	for _, tc := range []struct {
		name  string
		tab   context.Context
		query string
	}{{"tab 2", tab2, "tab=2"}, {"tab 1", tab1, "tab=1"}} {
		err := within(tc.tab, 60*time.Second, append(oidctest.SignIn("alice"), chromedp.WaitVisible(chromedp.CSS("pre")))...)
		if err != nil {
			t.Fatalf("%s: sign in: %v (the tab shows %s)", tc.name, err, shows(tc.tab))
		}
		// Chromium shows the echo's JSON, or the gateway's JSON error, in a <pre>.
		text, err := chromedp.Run(tc.tab, chromedp.Text(chromedp.CSS("pre")))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var e dev.EchoResponse
		if err := json.Unmarshal([]byte(text), &e); err != nil || e.Path != "/app" || e.Query != tc.query {
			t.Fatalf("%s landed on %q, want the upstream's answer to /app?%s", tc.name, text, tc.query)
		}
		if got := strings.Join(e.Headers["X-Tollgate-User"], ","); got != "alice" {
			t.Errorf("%s: upstream saw user %q, want alice", tc.name, got)
		}
		if loc, err := chromedp.Run(tc.tab, chromedp.Location()); err != nil || loc != x.gw+"/app?"+tc.query {
			t.Errorf("%s at %q (%v), want back at its own page", tc.name, loc, err)
		}
	}
	t.Logf("two tabs logged in at once in %v", time.Since(start).Round(time.Millisecond))

	// Both logins counted as such, none refused.
	checkLoginEvents(t, x, 2, 0)
}

// TestE2EGatewayLoginBound: one tab starts nine logins (its user gives up at
// the provider's login form each time); the gateway keeps eight under way per
// browser, so the ninth start ended the first. Signing in for the first after
// all brings the browser back to a callback that fails closed; signing in for
// the second, the oldest still under way, lands on its page, logged in.
func TestE2EGatewayLoginBound(t *testing.T) {
	x := startOIDCExample(t)
	tab := x.bctx
	var forms []string // the provider's login form of each attempt
	for i := range 9 {
		err := within(tab, 30*time.Second,
			chromedp.Navigate(fmt.Sprintf("%s/app?n=%d", x.gw, i)),
			chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)))
		loc, err2 := chromedp.Run(tab, chromedp.Location())
		if err = errors.Join(err, err2); err != nil {
			t.Fatalf("start %d: want the provider's login form: %v (the tab shows %s)", i, err, shows(tab))
		}
		forms = append(forms, loc)
	}
	signIn := func(form string) string {
		t.Helper()
		steps := append([]chromedp.Action[chromedp.Void]{chromedp.Navigate(form)}, oidctest.SignIn("alice")...)
		if err := within(tab, 60*time.Second, append(steps, chromedp.WaitVisible(chromedp.CSS("pre")))...); err != nil {
			t.Fatalf("sign in at %s: %v (the tab shows %s)", form, err, shows(tab))
		}
		text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("pre")))
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	if text := signIn(forms[0]); !strings.Contains(text, `"login_failed"`) {
		t.Errorf("the ended first login: %q, want the gateway's login_failed", text)
	}
	var e dev.EchoResponse
	if text := signIn(forms[1]); json.Unmarshal([]byte(text), &e) != nil || e.Path != "/app" || e.Query != "n=1" {
		t.Errorf("the second login landed on %q, want the upstream's answer to /app?n=1", text)
	}
	checkLoginEvents(t, x, 1, 1)
}

// within runs steps in tab, for at most d.
func within(tab context.Context, d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tab, d)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// checkLoginEvents compares the gateway's count of logins of the example's
// provider, successful and refused, with the test's.
func checkLoginEvents(t *testing.T, x *oidcExample, success, refused int) {
	t.Helper()
	resp, err := http.Get("http://" + x.g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for result, n := range map[string]int{"success": success, "refused": refused} {
		line := fmt.Sprintf(`tollgate_login_events_total{event="login",provider="local",result=%q}`, result)
		want := fmt.Sprintf("%s %d\n", line, n)
		if n == 0 && !strings.Contains(string(metrics), line) {
			continue
		}
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics: want %q", want)
		}
	}
}

// shows is where a tab is and the start of its text, for a failure message.
func shows(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	text, err2 := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if len(text) > 300 {
		text = text[:300] + "…"
	}
	return fmt.Sprintf("%s: %q (%v)", loc, text, errors.Join(err, err2))
}
