package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"tollgate.dev/tollgate/internal/config"
)

// auditFile is e's gateway file with audit as its audit section (flow style).
func (e *env) auditFile(audit string) *config.Gateway {
	e.t.Helper()
	text := e.gatewayFile(e.route("echo", "", ""), "", "")
	const started = "audit: {sinks: [{file: audit.log}]}"
	if !strings.Contains(text, started) {
		e.t.Fatalf("gateway file without %q", started)
	}
	file := filepath.Join(e.dir, "next.yaml")
	if err := os.WriteFile(file, []byte(strings.Replace(text, started, "audit: "+audit, 1)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// auditIDs counts the request ids of the audit file name (under e.dir).
func (e *env) auditIDs(name string) map[string]int {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.dir, name))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			RequestID string `json:"requestId"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			e.t.Fatalf("%s: %v", name, err)
		}
		ids[ev.RequestID]++
	}
	if err := sc.Err(); err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// TestAuditReloadUnderLoad changes the audit sinks of a running gateway
// under HTTP load through reloadAudit: a file sink switched to another file,
// then a second sink added. No request fails; each request's record is in
// exactly one of the two switched files, never in the old one if the request
// was sent after the switch, and in the added file if it was sent after the
// addition. Then a sink that can't be opened is refused with its position
// and changes nothing, and a journal waits for a restart.
func TestAuditReloadUnderLoad(t *testing.T) {
	const (
		clients  = 4
		requests = 1200
	)
	e, _ := startPolicyEnv(t, apDoc("deny", `{action: DENY, rules: [{to: [{operation: {paths: ["/deny"]}}]}]}`), policyEnvOptions{})
	steps := []struct {
		audit string
		// required: every request sent after this step's commit is in
		// these files; gone: and in none of these.
		required, gone []string
	}{
		{audit: "{sinks: [{file: audit.log}]}"},
		{audit: "{sinks: [{file: audit2.log}]}", required: []string{"audit2.log"}, gone: []string{"audit.log"}},
		{audit: "{sinks: [{file: audit2.log}, {file: audit3.log, name: second}]}", required: []string{"audit2.log"}, gone: []string{"audit.log"}},
	}
	prev := e.auditFile(steps[0].audit)

	// epoch counts the changes committed, begun those begun; a request
	// notes epoch before it is sent.
	var epoch, begun, sent atomic.Int64
	type req struct {
		id     string
		before int
	}
	var (
		mu     sync.Mutex
		reqs   []req
		failed []string
		wg     sync.WaitGroup
	)
	share := int64(requests / len(steps))
	changes := int64(len(steps) - 1)
	for range clients {
		wg.Go(func() {
			for sent.Add(1) <= requests {
				// The load goes on during a change and waits for it half
				// a share later.
				for ep := epoch.Load(); ep < changes && sent.Load() >= (ep+1)*share+share/2; ep = epoch.Load() {
					runtime.Gosched()
				}
				before := int(epoch.Load())
				resp, err := e.client.Get(e.base + "/x")
				mu.Lock()
				switch {
				case err != nil:
					failed = append(failed, err.Error())
				case resp.StatusCode != 200:
					failed = append(failed, resp.Status)
				default:
					reqs = append(reqs, req{resp.Header.Get("X-Request-Id"), before})
				}
				mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	for k := 1; k < len(steps); k++ {
		for sent.Load() < int64(k)*share {
			runtime.Gosched()
		}
		begun.Add(1)
		next := e.auditFile(steps[k].audit)
		restart, commit, abort, err := e.gw.ReloadAudit(prev, next)
		if err != nil || len(restart) > 0 || commit == nil || abort == nil {
			t.Fatalf("step %d: restart %v, commit %v, abort %v, err %v", k, restart, commit != nil, abort != nil, err)
		}
		commit()
		epoch.Add(1)
		prev = next
	}
	wg.Wait()

	// A sink that can't be opened: refused, positioned, nothing changed.
	bad := e.auditFile("{sinks: [{file: audit2.log}, {file: pki}]}")
	restart, commit, abort, err := e.gw.ReloadAudit(prev, bad)
	if err == nil || commit != nil || abort != nil || len(restart) > 0 {
		t.Errorf("unopenable sink: restart %v, commit %v, err %v; want a refusal", restart, commit != nil, err)
	} else if es, ok := config.AsErrors(err); !ok || !strings.Contains(es.Error(), "audit.sinks[1].file") || es[0].Line == 0 {
		t.Errorf("unopenable sink: %v, want a positioned error on audit.sinks[1].file", err)
	}
	// A journal waits for a restart, and so do the sinks, which depend on it.
	journaled := e.auditFile(fmt.Sprintf("{journal: {dir: %q}, sinks: [{file: audit4.log}]}", filepath.Join(e.dir, "journal")))
	restart, commit, _, err = e.gw.ReloadAudit(prev, journaled)
	if want := []string{"audit.journal", "audit.sinks"}; err != nil || commit != nil || !slices.Equal(restart, want) {
		t.Errorf("journal added: restart %v, commit %v, err %v; want %v and nothing to commit", restart, commit != nil, err, want)
	}
	if journaled.Audit.Journal != nil || len(journaled.Audit.Sinks) != 2 {
		t.Errorf("journal added: the candidate's audit section is %+v, want the one in force", journaled.Audit)
	}

	if err := e.gw.Shutdown(context.Background()); err != nil { // flushes the audit files
		t.Fatal(err)
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed, first: %s", len(failed), requests, failed[0])
	}
	files := map[string]map[string]int{}
	for _, name := range []string{"audit.log", "audit2.log", "audit3.log", "audit4.log"} {
		files[name] = e.auditIDs(name)
	}
	if n := len(files["audit4.log"]); n > 0 {
		t.Errorf("audit4.log, of a change that waits for a restart, has %d records", n)
	}
	perStep := make([]int, len(steps))
	for _, r := range reqs {
		perStep[r.before]++
		if n := files["audit.log"][r.id] + files["audit2.log"][r.id]; n != 1 {
			t.Errorf("request %s (sent after change %d): in audit.log or audit2.log %d times, want once", r.id, r.before, n)
		}
		for k := 1; k <= r.before; k++ {
			for _, name := range steps[k].required {
				if files[name][r.id] != 1 {
					t.Errorf("request %s, sent after change %d: %d times in %s, want once", r.id, r.before, files[name][r.id], name)
				}
			}
			for _, name := range steps[k].gone {
				if files[name][r.id] != 0 {
					t.Errorf("request %s, sent after change %d: in %s, which it removed", r.id, r.before, name)
				}
			}
		}
		if r.before == 2 && files["audit3.log"][r.id] != 1 {
			t.Errorf("request %s, sent after the second sink was added: %d times in audit3.log, want once", r.id, files["audit3.log"][r.id])
		}
	}
	t.Logf("%d requests (%v sent after 0, 1, 2 changes), none failed; audit.log %d, audit2.log %d, audit3.log %d records",
		len(reqs), perStep, len(files["audit.log"]), len(files["audit2.log"]), len(files["audit3.log"]))
	if len(reqs) != requests || slices.Contains(perStep, 0) {
		t.Errorf("requests per step %v, want %d in all, some in each", perStep, requests)
	}
}
