package config

import (
	"strings"
	"testing"
)

// The effective configuration never prints a password, even one written
// into a URL's userinfo; durations print as durations; absent sections and
// empty values are left out.
func TestEffectiveElidesAndFormats(t *testing.T) {
	g := &Gateway{APIVersion: APIVersion, Kind: KindGateway, ShutdownTimeout: 90_000_000_000,
		Audit: Audit{Sinks: []AuditSink{{Webhook: &AuditWebhook{URL: "https://user:hunter2@siem.example/ingest"}},
			{Webhook: &AuditWebhook{URL: "https://siem.example/ingest?token=s3cr3t"}}}}}
	b, err := g.Effective()
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range []string{"shutdownTimeout: 1m30s", "url: https://user:xxxxx@siem.example/ingest", "url: https://siem.example/ingest?token=xxxxx"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for _, absent := range []string{"hunter2", "s3cr3t", "ingress:", "egress:", "oidc:", `""`} {
		if strings.Contains(out, absent) {
			t.Errorf("%q printed:\n%s", absent, out)
		}
	}
}
