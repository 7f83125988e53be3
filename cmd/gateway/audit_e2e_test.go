//go:build e2e

package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/audit/audittest"
)

// TestE2EAuditToRsyslog: the gateway, configured as docs/audit.md shows,
// ships its audit records through the journal to a real rsyslogd over TLS,
// as OCSF.
func TestE2EAuditToRsyslog(t *testing.T) {
	rs := audittest.StartRsyslog(t)
	dir := t.TempDir()
	caFile := rs.CA.WriteRoot(t, dir, "syslog-ca.crt")
	ingress, admin := freeAddr(t), freeAddr(t)
	up := listenUpstream(t)
	file := auditConfig(t, ingress, admin, up, fmt.Sprintf(
		"audit:\n  journal: {dir: %s}\n  sinks:\n  - syslog: {address: %q, caFile: %s, serverName: localhost}\n    format: ocsf\n",
		filepath.Join(dir, "journal"), rs.Addr, caFile))
	startInProcess(t, file)
	ok, other := load(ingress, 2, 50, nil)
	if len(ok) != 100 || other != 0 {
		t.Fatalf("%d answered 200, %d otherwise; want 100 and 0", len(ok), other)
	}
	want := map[string]bool{}
	for _, id := range ok {
		want[id] = true
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		for _, l := range rs.Lines(t) {
			var ev struct {
				ClassUID int `json:"class_uid"`
				Metadata struct {
					CorrelationUID string `json:"correlation_uid"`
				} `json:"metadata"`
				HTTPResponse struct {
					Code int `json:"code"`
				} `json:"http_response"`
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("rsyslog got %q: %v", l, err)
			}
			if ev.ClassUID != 4002 {
				t.Fatalf("rsyslog got a record of class %d, want OCSF HTTP Activity (4002): %s", ev.ClassUID, l)
			}
			if ev.HTTPResponse.Code == 200 {
				delete(want, ev.Metadata.CorrelationUID)
			}
		}
		if len(want) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 100 requests' records never reached rsyslog", len(want))
		}
	}
}
