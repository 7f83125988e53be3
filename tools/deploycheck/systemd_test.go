package deploycheck

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	unitFile     = filepath.Join(root, "deploy", "systemd", "tollgate.service")
	sysusersFile = filepath.Join(root, "deploy", "systemd", "tollgate.sysusers")
	port443File  = filepath.Join(root, "deploy", "systemd", "port-443.conf")
)

// The unit's command, replaced by a stub in the tests: systemd-analyze verify
// refuses a unit whose ExecStart does not exist.
const gatewayBin = "/usr/local/bin/gateway"

// maxExposure is the highest overall exposure `systemd-analyze security` may
// give the unit, in tenths (its --threshold): 2.0 of 10. The unit scores 1.3
// with systemd 252; a unit without the file system and namespace sandboxing
// scores 4.0.
const maxExposure = "20"

func systemdTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, "%s not found (Debian: apt-get install systemd)", name)
	}
	return p
}

// stubUnit writes unit (the text of a unit file) into a new folder as
// tollgate.service, its ExecStart pointing at an executable stub there, and the
// drop-ins (file name: text) into tollgate.service.d beside it, where
// systemd-analyze reads them; it returns the unit file's path.
func stubUnit(t *testing.T, unit string, dropIns ...string) string {
	t.Helper()
	dir := t.TempDir()
	stub := filepath.Join(dir, "gateway")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(unit, gatewayBin) {
		t.Fatalf("unit does not run %s", gatewayBin)
	}
	file := filepath.Join(dir, "tollgate.service")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(unit, gatewayBin, stub)), 0o644); err != nil {
		t.Fatal(err)
	}
	if len(dropIns)%2 != 0 {
		t.Fatal("dropIns: want name, text pairs")
	}
	for i := 0; i < len(dropIns); i += 2 {
		d := file + ".d"
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, dropIns[i]), []byte(dropIns[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return file
}

// verify runs systemd-analyze verify on the unit text. It passes only when the
// tool exits 0 and prints nothing: an unknown directive is only a warning to it
// ("Unknown key name 'ProtectSystm' in section 'Service', ignoring."), exit 0.
func verify(t *testing.T, unit string, dropIns ...string) (string, bool) {
	t.Helper()
	sa := systemdTool(t, "systemd-analyze")
	out, err := exec.Command(sa, "verify", "--man=no", stubUnit(t, unit, dropIns...)).CombinedOutput()
	return string(out), err == nil && strings.TrimSpace(string(out)) == ""
}

func readUnit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSystemdUnitVerifies(t *testing.T) {
	if out, ok := verify(t, readUnit(t)); !ok {
		t.Fatalf("systemd-analyze verify:\n%s", out)
	}
}

// TestSystemdVerifyRefusesMistakes: the check above is not blind. Each case
// edits the real unit (the edit must apply) and must fail it.
func TestSystemdVerifyRefusesMistakes(t *testing.T) {
	unit := readUnit(t)
	for _, tc := range []struct{ name, old, new string }{
		{"misspelled directive", "ProtectSystem=strict", "ProtectSystm=strict"},
		{"directive in the wrong section", "\n[Service]\n", "\n[Service]\nWantedBy=multi-user.target\n"},
		{"invalid value", "DynamicUser=yes", "DynamicUser=yse"},
		{"unknown system call group", "SystemCallFilter=@system-service", "SystemCallFilter=@system-services"},
		{"missing command", "ExecReload=/bin/kill", "ExecReload=/bin/kil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(unit, tc.old) {
				t.Fatalf("unit does not contain %q: update the test", tc.old)
			}
			if out, ok := verify(t, strings.Replace(unit, tc.old, tc.new, 1)); ok {
				t.Errorf("systemd-analyze verify passed (output %q)", out)
			} else {
				t.Logf("refused: %s", strings.TrimSpace(out))
			}
		})
	}
}

// security runs systemd-analyze security --offline on the unit text and reports
// whether its exposure is at most maxExposure.
func security(t *testing.T, unit string, dropIns ...string) (string, bool) {
	t.Helper()
	sa := systemdTool(t, "systemd-analyze")
	out, err := exec.Command(sa, "security", "--offline=true", "--no-pager", "--threshold="+maxExposure, stubUnit(t, unit, dropIns...)).CombinedOutput()
	return string(out), err == nil
}

func TestSystemdUnitExposure(t *testing.T) {
	out, ok := security(t, readUnit(t))
	if !ok {
		t.Fatalf("systemd-analyze security: exposure above %s/100:\n%s", maxExposure, out)
	}
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "Overall exposure level") {
			t.Log(strings.TrimSpace(line))
		}
	}
	// Without its sandboxing the unit must fail the threshold.
	var weak []string
	for line := range strings.SplitSeq(readUnit(t), "\n") {
		if !strings.HasPrefix(line, "Protect") && !strings.HasPrefix(line, "Private") && !strings.HasPrefix(line, "Restrict") {
			weak = append(weak, line)
		}
	}
	if out, ok := security(t, strings.Join(weak, "\n")); ok {
		t.Errorf("a unit without Protect*, Private* and Restrict* passes the threshold:\n%s", out)
	}
}

// TestSystemdUnitSettings: the settings docs/deploy.md promises, so that an edit
// that drops one fails here rather than in production.
func TestSystemdUnitSettings(t *testing.T) {
	got := map[string][]string{} // "Section.Key" -> values, in order
	section := ""
	sc := bufio.NewScanner(strings.NewReader(readUnit(t)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			got[section+"."+k] = append(got[section+"."+k], v)
		}
	}
	for key, want := range map[string]string{
		"Service.ExecStart":               gatewayBin + " run -c /etc/tollgate/gateway.yaml",
		"Service.ExecReload":              "/bin/kill -HUP $MAINPID",
		"Service.Restart":                 "on-failure",
		"Service.DynamicUser":             "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.NoNewPrivileges":         "yes",
		"Service.CapabilityBoundingSet":   "",
		"Service.AmbientCapabilities":     "",
		"Service.StateDirectory":          "tollgate",
		"Service.LogsDirectory":           "tollgate",
		"Service.SystemCallArchitectures": "native",
		"Service.LimitNOFILE":             "65536",
		"Install.WantedBy":                "multi-user.target",
	} {
		if v := got[key]; len(v) != 1 || v[0] != want {
			t.Errorf("%s = %q, want exactly %q", key, v, want)
		}
	}
	if f := got["Service.SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter = %q, want @system-service first", f)
	}
	if len(got["Service.TimeoutStopSec"]) != 1 {
		t.Errorf("TimeoutStopSec = %q: set it once (deploy/deploy_test.go holds it above the gateway's drain)", got["Service.TimeoutStopSec"])
	}
}

// TestSysusers: the group file is one systemd-sysusers accepts.
func TestSysusers(t *testing.T) {
	su := systemdTool(t, "systemd-sysusers")
	abs, err := filepath.Abs(sysusersFile)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(su, "--root="+t.TempDir(), "--dry-run", abs).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tollgate-secrets") {
		t.Fatalf("systemd-sysusers --dry-run: %v\n%s", err, out)
	}
	if !strings.Contains(readUnit(t), "\nSupplementaryGroups=tollgate-secrets\n") {
		t.Errorf("the unit does not join the group tollgate.sysusers creates")
	}
}

// TestSystemdPort443: the drop-in docs/deploy.md gives for port 443 verifies with
// the unit, keeps its exposure under the threshold, and grants only
// CAP_NET_BIND_SERVICE; a misspelling in it fails as one in the unit does.
func TestSystemdPort443(t *testing.T) {
	b, err := os.ReadFile(port443File)
	if err != nil {
		t.Fatal(err)
	}
	dropIn := string(b)
	if out, ok := verify(t, readUnit(t), "port-443.conf", dropIn); !ok {
		t.Fatalf("systemd-analyze verify with the drop-in:\n%s", out)
	}
	if out, ok := security(t, readUnit(t), "port-443.conf", dropIn); !ok {
		t.Fatalf("systemd-analyze security with the drop-in: exposure above %s/100:\n%s", maxExposure, out)
	}
	for line := range strings.SplitSeq(dropIn, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && v != "CAP_NET_BIND_SERVICE" {
			t.Errorf("drop-in sets %s=%s: it should grant CAP_NET_BIND_SERVICE only", k, v)
		}
	}
	bad := strings.Replace(dropIn, "AmbientCapabilities=", "AmbientCapabilitis=", 1)
	if bad == dropIn {
		t.Fatal("drop-in has no AmbientCapabilities=: update the test")
	}
	if out, ok := verify(t, readUnit(t), "port-443.conf", bad); ok {
		t.Errorf("a misspelled drop-in passes systemd-analyze verify (output %q)", out)
	}
}
