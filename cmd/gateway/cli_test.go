package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"tollgate.dev/tollgate/internal/config"
)

// commands are every command and subcommand, as typed.
var commands = [][]string{
	{"run"}, {"check"}, {"config"}, {"dev"}, {"dev", "pki"}, {"dev", "echo"},
	{"policy", "eval"}, {"policy", "test"}, {"audit", "verify"}, {"version"}, {"completion"},
}

// Help is asked for the same way everywhere and is not an error: usage on
// stdout, nothing on stderr, exit 0, and nothing else done (version -h does
// not print the version).
func TestHelpExitsZeroEverywhere(t *testing.T) {
	cases := [][]string{{"-h"}, {"--help"}, {"help"}, {"policy", "-h"}, {"audit", "--help"}}
	for _, c := range commands {
		for _, h := range []string{"-h", "-help", "--help"} {
			cases = append(cases, append(slices.Clone(c), h))
		}
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(args, nil, &out, &errb); code != 0 {
				t.Errorf("exit %d, want 0; stderr %q", code, errb.String())
			}
			if !strings.Contains(out.String(), "Usage: gateway") {
				t.Errorf("no usage on stdout: %q", out.String())
			}
			if errb.Len() > 0 {
				t.Errorf("stderr: %q", errb.String())
			}
			if strings.Contains(out.String(), "go        go1.") {
				t.Errorf("help printed the version: %q", out.String())
			}
		})
	}
}

// A usage mistake names itself, then shows the usage, exit 2.
func TestUsageMistakesNameThemselves(t *testing.T) {
	t.Setenv(envConfig, "")
	t.Setenv(envLogLevel, "")
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"run"}, want: "gateway run: -c is required: name the gateway file (or set $TOLLGATE_CONFIG)"},
		{args: []string{"check"}, want: "gateway check: -c is required"},
		{args: []string{"config"}, want: "gateway config: -c is required"},
		{args: []string{"run", "gateway.yaml"}, want: `gateway run: unexpected argument "gateway.yaml": the gateway file is given with -c (gateway run -c gateway.yaml)`},
		{args: []string{"check", "-c", "a.yaml", "b.yaml"}, want: `gateway check: unexpected argument "b.yaml"`},
		{args: []string{"run", "-c", "x.yaml", "-log-level", "verbose"}, want: `invalid -log-level "verbose": want debug, info, warn or error`},
		{args: []string{"run", "-c", "x.yaml"}, env: map[string]string{envLogLevel: "loud"}, want: `invalid -log-level "loud" (from $TOLLGATE_LOG_LEVEL): want debug, info, warn or error`},
		{args: []string{"run", "-c", "x.yaml", "-log-format", "xml"}, want: `invalid -log-format "xml": want text or json`},
		{args: []string{"dev", "pki"}, want: "gateway dev pki: -out is required"},
		{args: []string{"dev", "echo"}, want: "gateway dev echo: -allow is required"},
		{args: []string{"policy", "eval"}, want: "gateway policy eval: --request is required"},
		{args: []string{"policy", "test"}, want: "gateway policy test: name policy test files or directories"},
		{args: []string{"audit", "verify"}, want: "gateway audit verify: name journal files or directories"},
		{args: []string{"completion", "tcsh"}, want: `gateway completion: unknown shell "tcsh": want bash, zsh or fish`},
		{args: []string{"version", "extra"}, want: `gateway version: unexpected argument "extra"`},
		{args: []string{"run", "-nope"}, want: "flag provided but not defined: -nope"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			if code := run(tc.args, nil, &out, &errb); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, errb.String())
			}
			if !strings.Contains(errb.String(), "Usage: gateway") {
				t.Errorf("no usage after the mistake:\n%s", errb.String())
			}
		})
	}
}

// TOLLGATE_CONFIG names the file when -c does not; -c wins over it.
func TestConfigFromEnvironment(t *testing.T) {
	dir := copyExample(t, "quickstart")
	file := filepath.Join(dir, "gateway.yaml")
	t.Setenv(envConfig, file)
	var out, errb bytes.Buffer
	if code := run([]string{"check"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), file+": ok (1 route, 1 policy path)") {
		t.Errorf("check with $%s: exit %d, %q %q", envConfig, code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"check", "-c", filepath.Join(dir, "missing.yaml")}, nil, &out, &errb); code != 1 {
		t.Errorf("-c did not win over $%s: exit %d", envConfig, code)
	}
}

// The version comes from the build: the module, the Go version, and the
// VCS revision when the build recorded one. Test binaries carry no VCS
// stamp, so a real build is made and asked.
func TestVersionFromBuildInfo(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--version"}, nil, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("--version exited %d", code)
	}
	for _, want := range []string{"gateway ", "module    tollgate.dev/tollgate", "go        go1."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--version does not say %q:\n%s", want, out.String())
		}
	}
	if testing.Short() {
		return
	}
	bin := filepath.Join(t.TempDir(), "gateway")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "-ldflags", "-X main.buildDate=2026-12-07T00:00:00Z", ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, re := range []string{`(?m)^gateway \S+$`, `(?m)^  revision  [0-9a-f]{40}( \(modified\))?$`, `(?m)^  committed 20\d\d-`, `(?m)^  built     2026-12-07T00:00:00Z$`, `(?m)^  go        go1\.\d+`} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("version output does not match %s:\n%s", re, got)
		}
	}
}

// `gateway config` prints what the gateway would run: defaults filled in,
// durations as durations, $TOLLGATE_ADMIN_LISTEN applied. Loaded back, it
// is the same configuration.
func TestConfigPrintsTheEffectiveConfiguration(t *testing.T) {
	dir := copyExample(t, "quickstart")
	file := filepath.Join(dir, "gateway.yaml")
	t.Setenv(envAdminListen, "0.0.0.0:9902")
	var out, errb bytes.Buffer
	if code := run([]string{"config", "-c", file}, nil, &out, &errb); code != 0 {
		t.Fatalf("config exited %d: %s", code, errb.String())
	}
	for _, want := range []string{"shutdownTimeout: 30s", "listen: 0.0.0.0:9902", "readHeader: 10s", "mode: MERGE_SLASHES", "spiffeIDs: ['spiffe://example.org/ns/demo/sa/echo']"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("effective configuration lacks %q:\n%s", want, out.String())
		}
	}
	back, err := config.Parse(file, out.Bytes())
	if err != nil {
		t.Fatalf("the printed configuration does not load: %v\n%s", err, out.String())
	}
	want, _, err := loadChecked(file, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !back.SameSettings(want) {
		t.Errorf("the printed configuration loads as another one:\n%s", out.String())
	}
}

// `check` and `run` refuse the same files with the same lines, every problem
// of every kind in one run.
func TestCheckAndRunAgree(t *testing.T) {
	t.Setenv("SPIFFE_ENDPOINT_SOCKET", "")
	for _, tc := range []struct {
		name string
		edit func(string) string
		// policy, when set, replaces the policy file.
		policy string
		want   []string
	}{{
		name: "an unknown field does not hide a plain-text upstream or a missing certificate",
		edit: func(s string) string {
			s = strings.Replace(s, "pathPrefix: /", "pathprefix: /", 1)
			s = strings.Replace(s, "url: https://", "url: http://", 1)
			return strings.Replace(s, "cert: pki/tls.crt", "cert: pki/missing-tls.crt", 1)
		},
		want: []string{"ingress.routes[0].pathprefix: unknown field", "ingress.routes[0].upstream.url: must be https://", "ingress.tls.certificates[0].cert: cannot read"},
	}, {
		name: "a missing SVID key",
		edit: func(s string) string { return strings.Replace(s, "key: pki/gateway.key", "key: pki/missing.key", 1) },
		want: []string{"identity.files.key: cannot read"},
	}, {
		name: "a trust domain that contradicts the Workload API SPIFFE ID",
		edit: func(s string) string {
			return regexp.MustCompile(`(?s)  files:\n    cert:.*?bundle: pki/ca.crt[^\n]*\n`).ReplaceAllString(s,
				"  workloadAPI: {socket: \"unix:///nonexistent/agent.sock\", spiffeID: \"spiffe://other.org/gw\"}\n")
		},
		want: []string{`identity.trustDomain: identity.workloadAPI.spiffeID spiffe://other.org/gw is not in trust domain "example.org"`},
	}, {
		name: "a Workload API with no socket, in the file or the environment",
		edit: func(s string) string {
			return regexp.MustCompile(`(?s)  files:\n    cert:.*?bundle: pki/ca.crt[^\n]*\n`).ReplaceAllString(s, "  workloadAPI: {}\n")
		},
		want: []string{"identity.workloadAPI.socket: no Workload API socket"},
	}, {
		name: "a YAML syntax error, at its column",
		edit: func(s string) string {
			return strings.Replace(s, "  listen: 127.0.0.1:8443", "  listen: 127.0.0.1:8443\n  bad: x: y", 1)
		},
		want: []string{"gateway.yaml:13:8: invalid YAML: mapping value is not allowed"},
	}, {
		name:   "a broken policy document",
		policy: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: istio-system}\nspec: {action: ALLOW, rules: [{to: [{operation: {pathz: [/x]}}]}]}\n",
		want:   []string{"pathz"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyExample(t, "quickstart")
			file := filepath.Join(dir, "gateway.yaml")
			b, _ := os.ReadFile(file)
			text := string(b)
			if tc.edit != nil {
				text = tc.edit(text)
			}
			os.WriteFile(file, []byte(text), 0o644)
			if tc.policy != "" {
				matches, _ := filepath.Glob(filepath.Join(dir, "policies", "*.yaml"))
				for _, m := range matches {
					os.Remove(m)
				}
				os.WriteFile(filepath.Join(dir, "policies", "p.yaml"), []byte(tc.policy), 0o644)
			}
			var checkOut, checkErr, runOut, runErr bytes.Buffer
			if code := run([]string{"check", "-c", file}, nil, &checkOut, &checkErr); code != 1 {
				t.Fatalf("check exited %d: %s", code, checkOut.String())
			}
			if code := run([]string{"run", "-c", file}, nil, &runOut, &runErr); code != 1 {
				t.Fatalf("run exited %d", code)
			}
			if checkErr.String() != runErr.String() {
				t.Errorf("check said:\n%s\nrun said:\n%s", checkErr.String(), runErr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(checkErr.String(), w) {
					t.Errorf("check did not say %q:\n%s", w, checkErr.String())
				}
			}
		})
	}
}

// Every flag of every command is in the completion scripts, and bash
// completes commands, subcommands, flags and enumerated values.
func TestCompletion(t *testing.T) {
	flagRE := regexp.MustCompile(`(?m)^  -(\S+)`)
	for _, s := range completionSpec {
		var out bytes.Buffer
		run(append(strings.Fields(s.cmd), "-h"), nil, &out, &bytes.Buffer{})
		var flags []string
		for _, m := range flagRE.FindAllStringSubmatch(out.String(), -1) {
			flags = append(flags, m[1])
		}
		slices.Sort(flags)
		want := slices.Sorted(slices.Values(s.flags))
		if !slices.Equal(flags, want) {
			t.Errorf("%s: the command has flags %v, completion offers %v", s.cmd, flags, want)
		}
	}
	for _, shell := range shells {
		var out bytes.Buffer
		if code := run([]string{"completion", shell}, nil, &out, &bytes.Buffer{}); code != 0 || out.Len() == 0 {
			t.Errorf("completion %s: exit %d", shell, code)
		}
	}
	scripts := map[string]string{}
	for _, shell := range shells {
		var script bytes.Buffer
		run([]string{"completion", shell}, nil, &script, &bytes.Buffer{})
		scripts[shell] = filepath.Join(t.TempDir(), "gateway."+shell)
		os.WriteFile(scripts[shell], script.Bytes(), 0o644)
	}
	// complete runs the shell's completion of the line typed (the last
	// word, maybe empty, is completed) and returns the candidates, sorted.
	complete := map[string]func(line string) (string, error){
		"bash": func(line string) (string, error) {
			return completeBashLike("bash", "source "+scripts["bash"]+"; ", line)
		},
		// zsh runs the bash function through bashcompinit: its compgen
		// calls the function under sh emulation (0-based arrays), as here,
		// and zsh's compadd then keeps the candidates that start with the
		// word typed (bashcompinit's compgen -W does not filter them).
		"zsh": func(line string) (string, error) {
			out, err := completeBashLike("zsh", "autoload -U +X compinit && compinit -u; source "+scripts["zsh"]+"; emulate sh; setopt ksharrays; ", line)
			typed := line[strings.LastIndex(line, " ")+1:]
			var kept []string
			for _, w := range strings.Fields(out) {
				if strings.HasPrefix(w, typed) {
					kept = append(kept, w)
				}
			}
			return strings.Join(kept, " "), err
		},
		"fish": func(line string) (string, error) {
			b, err := exec.Command("fish", "-c", "source "+scripts["fish"]+"; complete -C"+shellQuote(line)).Output()
			return sortedWords(string(b)), err
		},
	}
	for _, shell := range shells {
		if _, err := exec.LookPath(shell); err != nil {
			if os.Getenv("TOLLGATE_REQUIRE_E2E") != "" {
				t.Fatalf("%s is needed to test its completion (scripts/shells/install.sh): %v", shell, err)
			}
			t.Logf("%s not installed (scripts/shells/install.sh): its completion is not run", shell)
			delete(complete, shell)
		}
	}
	for _, tc := range []struct {
		words string // the line typed; the last word is completed
		want  string
	}{
		{"gateway po", "policy"},
		{"gateway policy ", "eval test"},
		{"gateway run -log-", "-log-format -log-level"},
		{"gateway run -log-level ", "debug error info warn"},
		{"gateway policy eval -normalization M", "MERGE_SLASHES"},
		{"gateway completion ", "bash fish zsh"},
		{"gateway audit verify -", "-key"},
	} {
		for shell, fn := range complete {
			got, err := fn(tc.words)
			if err != nil {
				t.Fatalf("%s: %q: %v", shell, tc.words, err)
			}
			if got != tc.want {
				t.Errorf("%s: %q completes to %q, want %q", shell, tc.words, got, tc.want)
			}
		}
	}
}

// completeBashLike calls the bash completion function _gateway in shell,
// after setup, for the line typed.
func completeBashLike(shell, setup, line string) (string, error) {
	words := strings.Split(line, " ")
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = shellQuote(w)
	}
	prog := setup + "COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) +
		"; _gateway; printf '%s\\n' \"${COMPREPLY[@]}\""
	b, err := exec.Command(shell, "-c", prog).Output()
	return sortedWords(string(b)), err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// sortedWords is the words of out, sorted, joined by spaces.
func sortedWords(out string) string {
	words := strings.Fields(out)
	slices.Sort(words)
	return strings.Join(words, " ")
}
