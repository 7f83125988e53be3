package spiretest

import (
	"strings"
	"testing"
)

// These run without SPIRE binaries: the parts of the harness that decide skip/fail and render configs.

func TestFindBinariesMissing(t *testing.T) {
	t.Setenv(EnvBin, t.TempDir())
	_, err := FindBinaries()
	if err == nil || !strings.Contains(err.Error(), "spire binaries not found") {
		t.Fatalf("FindBinaries in an empty folder: err = %v, want 'spire binaries not found'", err)
	}
}

func TestRenderTemplates(t *testing.T) {
	tests := []struct {
		name    string
		tmpl    string
		vars    map[string]string
		want    []string
		wantErr string
	}{
		{
			name: "server",
			tmpl: "server.conf.tmpl",
			vars: map[string]string{"RUN": "/tmp/x", "TRUST_DOMAIN": "a.test", "SERVER_PORT": "1", "SERVER_HEALTH_PORT": "2", "SVID_TTL": "30s"},
			want: []string{`socket_path = "/tmp/x/server.sock"`, `trust_domain = "a.test"`, `default_x509_svid_ttl = "30s"`, `bind_address = "127.0.0.1"`},
		},
		{
			name: "agent",
			tmpl: "agent.conf.tmpl",
			vars: map[string]string{"RUN": "/tmp/x", "TRUST_DOMAIN": "a.test", "SERVER_PORT": "1", "AGENT_HEALTH_PORT": "3"},
			want: []string{`socket_path = "/tmp/x/workload/agent.sock"`, `server_address = "127.0.0.1"`, `KeyManager "disk"`},
		},
		{
			name:    "missing var",
			tmpl:    "agent.conf.tmpl",
			vars:    map[string]string{"RUN": "/tmp/x", "TRUST_DOMAIN": "a.test", "SERVER_PORT": "1"},
			wantErr: "unreplaced marker",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := renderTemplate(tc.tmpl, tc.vars)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("rendered %s lacks %q", tc.tmpl, w)
				}
			}
		})
	}
}
