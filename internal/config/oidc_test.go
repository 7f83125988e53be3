package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const oidcSection = `oidc:
  providers:
  - name: main
    issuer: https://idp.example.com
    clientID: tollgate
    clientSecretFile: secret
    extraAuthParams: {prompt: consent}
    postLogoutRedirectPath: /.tollgate/main/oidc/signed-out
  sessionKeyFiles: [session.key]
`

func oidcConfig(route string) string {
	return strings.Replace(validConfig, "  - name: api\n", route+"  - name: api\n", 1) + oidcSection
}

func TestLoadOIDC(t *testing.T) {
	dir := fixtureDir(t)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "session.key"), []byte("k"), 0o600)
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(strings.Replace(oidcConfig(""), "    host: app.example.com\n", "    host: app.example.com\n    login: main\n", 1)), 0o600)
	g, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := g.Ingress.Routes[0].Login; got != "main" {
		t.Errorf("route login = %q", got)
	}
	o := g.OIDC
	if o.SessionTTL != DefaultSessionTTL || o.SessionKeyFiles[0] != filepath.Join(dir, "session.key") ||
		o.Providers[0].ClientSecretFile != filepath.Join(dir, "secret") || o.Providers[0].ExtraAuthParams["prompt"] != "consent" {
		t.Errorf("oidc section: %+v", o)
	}
	if o.Provider("main") == nil || o.Provider("nope") != nil || (*OIDC)(nil).Provider("main") != nil {
		t.Error("Provider lookup")
	}
}

func TestLoadOIDCBadInput(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(string) string
		wants []string
	}{
		{
			name: "unknown provider, reserved prefix",
			edit: func(s string) string {
				return strings.Replace(s, "    pathPrefix: /api\n", "    pathPrefix: /.tollgate/x\n    login: other\n", 1)
			},
			wants: []string{
				`ingress.routes[1].login: no provider "other" in oidc.providers (have: main)`,
				`ingress.routes[1].pathPrefix: /.tollgate/ is reserved`,
			},
		},
		{
			name: "cleartext issuer, reserved auth param, bad logout path, duplicate name",
			edit: func(s string) string {
				s = strings.Replace(s, "https://idp.example.com", "http://idp.example.com", 1)
				s = strings.Replace(s, "{prompt: consent}", "{prompt: consent, Redirect_URI: https://evil.example}", 1)
				s = strings.Replace(s, "/.tollgate/main/oidc/signed-out", "//evil.example", 1)
				return strings.Replace(s, "  sessionKeyFiles:", "  - {name: main, issuer: 'https://b.example', clientID: b}\n  sessionKeyFiles:", 1)
			},
			wants: []string{
				`oidc.providers[0].issuer: http:// is allowed only for a loopback issuer`,
				`oidc.providers[0].extraAuthParams.Redirect_URI: set by the login flow`,
				`oidc.providers[0].postLogoutRedirectPath: want a same-origin path`,
				`oidc.providers[1].name: duplicate provider name "main"`,
			},
		},
		{
			name: "missing files, no client id, short session",
			edit: func(s string) string {
				s = strings.Replace(s, "    clientID: tollgate\n", "", 1)
				s = strings.Replace(s, "clientSecretFile: secret", "clientSecretFile: nope", 1)
				return strings.Replace(s, "[session.key]", "[gone.key]\n  sessionTTL: 30s", 1)
			},
			wants: []string{
				`oidc.providers[0].clientID: required`,
				`oidc.providers[0].clientSecretFile: cannot read`,
				`oidc.sessionKeyFiles[0]: cannot read`,
				`oidc.sessionTTL: want at least 1m (got 30s)`,
			},
		},
		{
			name: "no session keys",
			edit: func(s string) string {
				return strings.Replace(s, "  sessionKeyFiles: [session.key]\n", "", 1)
			},
			wants: []string{`oidc.sessionKeyFiles: at least one key file is required`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := fixtureDir(t)
			os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cret\n"), 0o600)
			os.WriteFile(filepath.Join(dir, "session.key"), []byte("k"), 0o600)
			file := filepath.Join(dir, "gateway.yaml")
			os.WriteFile(file, []byte(tc.edit(oidcConfig(""))), 0o600)
			_, err := Load(file)
			if err == nil {
				t.Fatal("Load succeeded, want errors")
			}
			out := err.Error()
			for _, w := range tc.wants {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in:\n%s", w, out)
				}
			}
		})
	}
}

func TestCheckIssuer(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"https://idp.example.com", true},
		{"https://idp.example.com/realms/x", true},
		{"http://127.0.0.1:9000", true},
		{"http://[::1]:9000", true},
		{"http://localhost:9000", true},
		{"http://idp.example.com", false},
		{"http://127.0.0.1.evil.example", false},
		{"https://idp.example.com?x=1", false},
		{"https://user@idp.example.com", false},
		{"ftp://idp.example.com", false},
		{"idp.example.com", false},
	} {
		if err := checkIssuer(tc.in); (err == nil) != tc.ok {
			t.Errorf("checkIssuer(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
