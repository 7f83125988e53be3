package policy

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := NewStore(Options{})
	if s.Current() != nil {
		t.Fatal("store not empty before the first load")
	}
	write(pol("deny-a", `{action: DENY, rules: [{to: [{operation: {paths: [/a]}}]}]}`))
	first, err := s.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	req := &request.Request{Path: "/a"}
	if d := s.Current().EngineAllPolicies().Decide(req); d.Allow || d.Version != first.Version() {
		t.Fatalf("first set: %+v", d)
	}

	// A broken set is refused with positioned errors and the old one keeps serving.
	write(pol("deny-a", `{action: DENY, rules: [{to: [{operation: {ports: [http]}}]}]}`))
	if _, err := s.Load([]string{dir}); err == nil || !strings.Contains(err.Error(), "p.yaml:4:") || !strings.Contains(err.Error(), "invalid port") {
		t.Fatalf("broken set: err = %v", err)
	}
	if s.Current() != first {
		t.Fatal("broken set replaced the serving one")
	}

	write(pol("deny-b", `{action: DENY, rules: [{to: [{operation: {paths: [/b]}}]}]}`))
	second, err := s.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if second.Version() == first.Version() {
		t.Error("new content kept the old version")
	}
	if d := s.Current().EngineAllPolicies().Decide(req); !d.Allow || d.Version != second.Version() {
		t.Fatalf("second set: %+v", d)
	}
}

// TestStoreConcurrent swaps sets while other goroutines decide (run with -race).
func TestStoreConcurrent(t *testing.T) {
	a := mustCompile(t, pol("a", `{action: DENY, rules: [{}]}`), Options{})
	b := mustCompile(t, pol("b", `{rules: [{}]}`), Options{})
	s := NewStore(Options{})
	s.Swap(a)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				set := s.Current()
				d := set.Engine(map[string]string{"x": "y"}).Decide(&request.Request{})
				if d.Allow != (set == b) {
					t.Errorf("decision %+v from the wrong set", d)
					return
				}
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			s.Swap(b)
		} else {
			s.Swap(a)
		}
	}
	wg.Wait()
}

func TestStoreWatch(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	// Replace the file atomically, as a deployment tool (or a ConfigMap) does.
	write := func(src string) error {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, file)
	}
	if err := write(pol("a", `{rules: [{}]}`)); err != nil {
		t.Fatal(err)
	}
	s := NewStore(Options{})
	if _, err := s.Load([]string{dir}); err != nil {
		t.Fatal(err)
	}
	reports := make(chan error, 16)
	w := s.Watch([]string{dir}, 5*time.Millisecond, func(_ *Set, err error) { reports <- err })
	defer w.Close()

	if err := write(pol("a", `{action: NOPE}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reports:
		if err == nil || !strings.Contains(err.Error(), "unknown action") {
			t.Fatalf("broken reload reported %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("broken reload not reported")
	}
	if err := write(pol("a", `{action: DENY, rules: [{}]}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reports:
		if err != nil {
			t.Fatalf("good reload reported %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("good reload not reported")
	}
	if d := s.Current().EngineAllPolicies().Decide(&request.Request{}); d.Allow {
		t.Errorf("reloaded set not serving: %+v", d)
	}
	w.Close()
	w.Close() // idempotent
}
