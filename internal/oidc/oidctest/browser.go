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
