package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/dev"
	"tollgate.dev/tollgate/internal/egress"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
)

const (
	issuer    = "https://issuer.test"
	audience  = "https://gateway.test"
	gatewayID = "spiffe://example.org/ns/tollgate/sa/gateway"
	echoID    = "spiffe://example.org/ns/demo/sa/echo"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// env is a running gateway with files identity, an echo upstream, and policies
// in a directory the test may rewrite.
type env struct {
	t         *testing.T
	dir       string
	policyDir string
	gw        *gateway.Gateway
	base      string
	client    *http.Client
	h1        *http.Client
	key       *rsa.PrivateKey
	// cfgFile is the gateway file; echoAddr the echo upstream's address.
	cfgFile, echoAddr string
}

func jwksFor(key *rsa.PublicKey, kid string) string {
	b64 := base64.RawURLEncoding.EncodeToString
	j, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	return string(j)
}

func (e *env) token(claims jwt.MapClaims, key *rsa.PrivateKey) string {
	e.t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(key)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func claimsFor(sub string, groups ...string) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": issuer, "sub": sub, "aud": audience, "groups": groups,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}
}

func startEnv(t *testing.T, policies string) *env {
	return startEnvOpts(t, policies, envOptions{})
}

// envOptions add to the default environment.
type envOptions struct {
	// ingress is YAML appended to the ingress section (two-space indented).
	ingress string
	// ingressOverride, when set, replaces the ingress's tls section (and may
	// add fields), two-space indented.
	ingressOverride string
	// top is YAML appended at the top level of the configuration.
	top string
	// egressResolver replaces the system resolver for egress destinations.
	egressResolver egress.Resolver
	// noIngress drops the ingress section (an egress-only gateway).
	noIngress bool
	// svids are more SVIDs to write into pki/ (name -> SPIFFE ID).
	svids map[string]string
}

func startEnvOpts(t *testing.T, policies string, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	ids := map[string]string{"gateway": gatewayID, "echo": echoID}
	for k, v := range o.svids {
		ids[k] = v
	}
	pki, echo, log := startPKIAndEcho(t, dir, ids)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, policyDir: filepath.Join(dir, "policies"), key: key,
		cfgFile: filepath.Join(dir, "gateway.yaml"), echoAddr: echo.Addr()}
	os.MkdirAll(e.policyDir, 0o755)
	e.writePolicy(policies)
	cfgText := e.gatewayFile(e.route("echo", "", ""), o.ingress, "")
	cfgText += o.top
	if o.noIngress {
		i, j := strings.Index(cfgText, "ingress:\n"), strings.Index(cfgText, "admin:")
		cfgText = cfgText[:i] + cfgText[j:]
	}
	if o.ingressOverride != "" {
		cfgText = strings.Replace(cfgText, "  tls:\n    certificates: [{cert: pki/tls.crt, key: pki/tls.key}]\n", o.ingressOverride, 1)
	}
	file := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(file, []byte(cfgText), 0o644)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: log, EgressResolver: o.egressResolver})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Shutdown(context.Background()) })
	e.gw = gw
	if a := gw.IngressAddr(); a != nil {
		e.base = "https://" + a.String()
	}
	pem, _ := os.ReadFile(pki.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	mk := func(h2 bool) *http.Client {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	e.client, e.h1 = mk(true), mk(false)
	return e
}

func (e *env) writePolicy(text string) {
	e.t.Helper()
	// Write then rename, as config management tools do, so no half file is read.
	tmp := filepath.Join(e.dir, "policy.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.policyDir, "policy.yaml")); err != nil {
		e.t.Fatal(err)
	}
}

type reply struct {
	status int
	header http.Header
	body   string
	echo   dev.EchoResponse
}

func (e *env) do(c *http.Client, method, path string, hdr ...string) reply {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.base+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if r.status == 200 {
		json.Unmarshal(b, &r.echo)
	}
	return r
}

// startPKIAndEcho writes a throwaway PKI with the given SVIDs into dir/pki and
// starts the echo upstream on its echo SVID, accepting only the gateway's ID.
func startPKIAndEcho(t *testing.T, dir string, ids map[string]string) (*dev.PKI, *dev.Echo, *slog.Logger) {
	t.Helper()
	pki, err := dev.WritePKI(filepath.Join(dir, "pki"), "example.org", time.Hour, ids)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	echoSrc, err := identity.NewFiles(identity.FilesOptions{Cert: pki.SVIDs[echoID][0], Key: pki.SVIDs[echoID][1], Bundle: pki.CA})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echoSrc.Close() })
	onlyGW, _ := identity.ParseMatcher([]string{gatewayID})
	echo, err := dev.StartEcho("127.0.0.1:0", echoSrc, onlyGW, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	return pki, echo, log
}
