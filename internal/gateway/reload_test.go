package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const denyX = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-x, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/x"]}}]}]
`

const denyY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-y, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/y"]}}]}]
`

// eventually polls until the statuses of /x and /y are as wanted (bounded).
func (e *env) eventually(wantX, wantY int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		x, y := e.do(e.client, "GET", "/x").status, e.do(e.client, "GET", "/y").status
		if x == wantX && y == wantY {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("/x=%d /y=%d, want %d %d", x, y, wantX, wantY)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) metrics() string {
	resp, err := http.Get("http://" + e.gw.AdminAddr() + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestPolicyHotReload(t *testing.T) {
	e := startEnv(t, denyX)
	e.eventually(403, 200)

	// A new set takes effect without a restart.
	e.writePolicy(denyY)
	e.eventually(200, 403)

	// A broken set is refused whole: the previous set keeps serving, the failure is counted.
	e.writePolicy(denyX + "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad}\nspec: {action: CUSTOM}\n")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(e.metrics(), `tollgate_config_reloads_total{kind="policy",result="failure"}`) {
		if time.Now().After(deadline) {
			t.Fatal("failed reload not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.eventually(200, 403)
	if err := e.gw.Reload(); err == nil || !strings.Contains(err.Error(), "policy.yaml:") {
		t.Errorf("SIGHUP reload of a broken set: %v (want a positioned error)", err)
	}
	resp, err := http.Get("http://" + e.gw.AdminAddr() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("readiness after a refused reload: %v %v", resp, err)
	}
	resp.Body.Close()

	// And a fixed set is taken again.
	e.writePolicy(denyX)
	e.eventually(403, 200)
}
