package listener

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/testkit"
)

// misdirectedStore serves, in this order (the first is the default):
// default.example.com and 127.0.0.1; api.example.com; *.apps.example.com;
// x.example.com and y.example.com; ip.example.com and ::1.
func misdirectedStore(tb testing.TB) (*CertStore, *testkit.CA) {
	tb.Helper()
	ca := testkit.NewCA(tb)
	store, err := NewStaticCertStore(
		ca.Issue(tb, "default.example.com", "127.0.0.1"),
		ca.Issue(tb, "api.example.com"),
		ca.Issue(tb, "*.apps.example.com"),
		ca.Issue(tb, "x.example.com", "y.example.com"),
		ca.Issue(tb, "ip.example.com", "::1"),
	)
	if err != nil {
		tb.Fatal(err)
	}
	return store, ca
}

func TestMisdirected(t *testing.T) {
	store, _ := misdirectedStore(t)
	tests := []struct {
		name      string
		sni, host string
		want      bool
	}{
		{name: "same name", sni: "api.example.com", host: "api.example.com"},
		{name: "host with port, trailing dot and case", sni: "api.example.com", host: "API.Example.COM.:8443"},
		{name: "SNI with case and trailing dot", sni: "Api.Example.Com.", host: "api.example.com"},
		{name: "one certificate for both names", sni: "x.example.com", host: "y.example.com:443"},
		{name: "wildcard covers both", sni: "shop.apps.example.com", host: "cart.apps.example.com"},
		{name: "two certificates", sni: "api.example.com", host: "x.example.com", want: true},
		{name: "wildcard SNI, exact host elsewhere", sni: "shop.apps.example.com", host: "api.example.com", want: true},
		// CVE-2020-15104's lesson: a wildcard covers one label only.
		{name: "wildcard does not cover two labels", sni: "shop.apps.example.com", host: "a.b.apps.example.com", want: true},
		{name: "unknown host falls to the default", sni: "api.example.com", host: "unknown.example.org", want: true},
		{name: "unknown host and default SNI", sni: "default.example.com", host: "unknown.example.org"},
		{name: "unknown SNI and unknown host", sni: "nowhere.example.org", host: "unknown.example.org"},
		{name: "unknown SNI, host on another certificate", sni: "nowhere.example.org", host: "api.example.com", want: true},
		{name: "IPv4 host on the SNI's certificate", sni: "default.example.com", host: "127.0.0.1:8443"},
		{name: "IPv4 host on another certificate", sni: "api.example.com", host: "127.0.0.1", want: true},
		{name: "IPv6 host with port", sni: "ip.example.com", host: "[::1]:8443"},
		{name: "IPv6 host in brackets", sni: "ip.example.com", host: "[::1]"},
		{name: "bare IPv6 host", sni: "ip.example.com", host: "::1"},
		{name: "IPv6 host on another certificate", sni: "api.example.com", host: "[::1]:443", want: true},
		{name: "IP host unknown", sni: "api.example.com", host: "127.0.0.2", want: true},
		{name: "no SNI", sni: "", host: "api.example.com"},
		{name: "no SNI, unknown host", sni: "", host: "unknown.example.org"},
		{name: "no SNI, IP host", sni: "", host: "127.0.0.1:8443"},
		{name: "empty host", sni: "api.example.com", host: "", want: true},
		{name: "empty host, default SNI", sni: "default.example.com", host: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := store.Misdirected(tt.sni, tt.host); got != tt.want {
				t.Errorf("Misdirected(%q, %q) = %v; want %v", tt.sni, tt.host, got, tt.want)
			}
		})
	}
}

// TestMisdirectedFronting: a client that sends one name in SNI and another
// in Host (domain fronting) is caught over real TLS, HTTP/1.1 and HTTP/2,
// by a handler that answers 421 as the gateway does.
func TestMisdirectedFronting(t *testing.T) {
	store, ca := misdirectedStore(t)
	srv := startServer(t, Config{Certs: store, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if store.Misdirected(r.TLS.ServerName, r.Host) {
			w.WriteHeader(http.StatusMisdirectedRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})})
	tests := []struct {
		name       string
		sni, host  string
		wantStatus int
	}{
		{name: "matching", sni: "api.example.com", host: "api.example.com", wantStatus: http.StatusOK},
		{name: "fronted", sni: "api.example.com", host: "x.example.com", wantStatus: http.StatusMisdirectedRequest},
		{name: "coalesced under a shared certificate", sni: "x.example.com", host: "y.example.com", wantStatus: http.StatusOK},
	}
	for _, p := range bothProtos {
		for _, tt := range tests {
			t.Run(string(p)+"/"+tt.name, func(t *testing.T) {
				c := newClient(t, ca.Pool(), srv.Addr(), tt.sni, p)
				resp, _ := get(t, c, tt.host, nil)
				if resp.StatusCode != tt.wantStatus {
					t.Errorf("SNI %q, Host %q: status %d; want %d", tt.sni, tt.host, resp.StatusCode, tt.wantStatus)
				}
			})
		}
	}
}

// FuzzMisdirected checks the port removal against net.SplitHostPort and
// Misdirected against properties that hold for any input: no SNI is never
// misdirected, case never matters, and a name is never misdirected from
// itself, with or without a port.
func FuzzMisdirected(f *testing.F) {
	store, _ := misdirectedStore(f)
	for _, seed := range [][2]string{
		{"api.example.com", "api.example.com:443"}, {"x.example.com", "y.example.com"}, {"", "api.example.com"},
		{"api.example.com", "[::1]:8443"}, {"ip.example.com", "::1"}, {"a", "[::1"}, {"a", "[::1]x"},
		{"a", ":"}, {"a", "]:80"}, {"A.APPS.EXAMPLE.COM.", "b.apps.example.com."}, {"127.0.0.1", "127.0.0.1:0"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, sni, host string) {
		if h, _, err := net.SplitHostPort(host); err == nil && hostOnly(host) != h {
			t.Fatalf("hostOnly(%q) = %q; net.SplitHostPort says %q", host, hostOnly(host), h)
		}
		got := store.Misdirected(sni, host)
		if sni == "" && got {
			t.Fatalf("Misdirected(%q, %q) without SNI", sni, host)
		}
		if up := store.Misdirected(asciiUpper(sni), asciiUpper(host)); up != got {
			t.Fatalf("Misdirected(%q, %q) = %v, but %v in upper case", sni, host, got, up)
		}
		if !strings.ContainsAny(sni, ":[]") {
			for _, h := range []string{sni, sni + ":443", sni + ":"} {
				if store.Misdirected(sni, h) {
					t.Fatalf("Misdirected(%q, %q): a name misdirected from itself", sni, h)
				}
			}
		}
		if addr := net.ParseIP(sni); addr != nil && strings.Contains(sni, ":") && !strings.ContainsAny(sni, "[]") {
			if h := "[" + sni + "]:443"; store.Misdirected(sni, h) {
				t.Fatalf("Misdirected(%q, %q): an IPv6 address misdirected from itself", sni, h)
			}
		}
	})
}
