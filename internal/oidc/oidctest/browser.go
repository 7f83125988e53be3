package oidctest

import (
	"context"
	"os"
	"testing"

	"github.com/chromedp/chromedp"
)

// Browser starts headless Chromium (chromium from Chromium) and returns a browser
// context; it is closed when ctx ends or the test does. The browser resolves
// nothing but loopback (pages such as the provider's dev login @import web fonts,
// and no test may reach beyond this machine), and trusts exactly the certificate
// whose base64 SHA-256 SPKI is trustedSPKI, nothing else.
func Browser(t testing.TB, ctx context.Context, chromium, trustedSPKI string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"),
		// Needs a user-data-dir to take effect.
		chromedp.Flag("ignore-certificate-errors-spki-list", trustedSPKI),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Env("TMPDIR="+t.TempDir()), // Chromium's own temp folders go away with the test
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	return bctx
}

// SignIn is what a user does at the test provider once the browser shows its
// login form: enter user (any password is accepted) and give consent. The
// provider then sends the browser back to the gateway's callback.
func SignIn(user string) []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any-password"),
		chromedp.Submit(chromedp.CSS(`input[name="password"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="prompt"][value="consent"] ~ button`)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	}
}

// SignOut opens the gateway's logout endpoint, whose page only offers a button
// (opening it ends nothing: logout is a same-origin POST), clicks it, confirms
// at the provider, waits for the gateway's signed-out page, then opens appURL
// and waits for the provider's login form: with the provider's session alive
// it would skip straight to consent, so this proves both sessions ended.
func SignOut(logoutURL, appURL string) []chromedp.Action[chromedp.Void] {
	return []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(logoutURL),
		chromedp.WaitVisible(chromedp.ID("sign-out")),
		chromedp.Click(chromedp.ID("sign-out")),
		chromedp.WaitVisible(chromedp.CSS(`button[name="logout"]`)),
		chromedp.Click(chromedp.CSS(`button[name="logout"]`)),
		chromedp.WaitVisible(chromedp.ID("signed-out")),
		chromedp.Navigate(appURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
	}
}
