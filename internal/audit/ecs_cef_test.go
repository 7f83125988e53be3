package audit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// ecsFieldSets are the top-level ECS field sets the formatter may use, and
// its own namespace.
var ecsFieldSets = map[string]bool{
	"@timestamp": true, "ecs": true, "event": true, "observer": true, "source": true, "destination": true,
	"url": true, "http": true, "user_agent": true, "user": true, "tls": true, "trace": true, "rule": true,
	"network": true, "error": true, "tollgate": true,
}

func TestECS(t *testing.T) {
	for name, ev := range ocsfTestEvents() {
		t.Run(name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(ev.AppendECS(nil, DefaultProduct), &m); err != nil {
				t.Fatal(err)
			}
			for k := range m {
				if !ecsFieldSets[k] {
					t.Errorf("top-level field %q is not an ECS field set", k)
				}
			}
			e := m["event"].(map[string]any)
			for _, k := range []string{"kind", "category", "type", "action", "outcome", "dataset"} {
				if e[k] == nil {
					t.Errorf("event.%s missing", k)
				}
			}
			if m["ecs"].(map[string]any)["version"] != ECSVersion || m["@timestamp"] != "2026-12-07T10:00:00.123Z" {
				t.Errorf("ecs.version %v @timestamp %v", m["ecs"], m["@timestamp"])
			}
			switch o := e["outcome"]; o {
			case "success", "failure", "unknown":
			default:
				t.Errorf("event.outcome %v", o)
			}
		})
	}
	// A few meanings pinned.
	ev := ocsfTestEvents()["ingress allowed, JWT"]
	ev.Duration = 1500 * time.Microsecond
	var m map[string]any
	json.Unmarshal(ev.AppendECS(nil, DefaultProduct), &m)
	if d := m["event"].(map[string]any)["duration"]; d != 1.5e6 {
		t.Errorf("event.duration %v, want nanoseconds", d)
	}
	if u := m["user"].(map[string]any)["id"]; u != "https://issuer.example/alice" {
		t.Errorf("user.id %v", u)
	}
	if r := m["rule"].(map[string]any)["id"]; r != "istio-system/allow-api/rules[0]" {
		t.Errorf("rule.id %v", r)
	}
}

// parseCEF splits a CEF:0 line into its seven header fields and its
// extension, undoing the escaping: what a SIEM's parser does.
func parseCEF(line string) (header []string, ext map[string]string, err error) {
	if !strings.HasPrefix(line, "CEF:0|") {
		return nil, nil, errors.New("no CEF:0 prefix")
	}
	rest := line[len("CEF:0|"):]
	var cur strings.Builder
	for len(header) < 6 {
		if rest == "" {
			return nil, nil, errors.New("short header")
		}
		c := rest[0]
		rest = rest[1:]
		switch {
		case c == '\\' && rest != "" && (rest[0] == '\\' || rest[0] == '|'):
			cur.WriteByte(rest[0])
			rest = rest[1:]
		case c == '|':
			header = append(header, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	// The extension: key=value pairs; a key starts after a space and ends
	// at an unescaped '='.
	ext = map[string]string{}
	type span struct{ key, val string }
	var pairs []span
	i := 0
	for i < len(rest) {
		eq := strings.IndexByte(rest[i:], '=')
		if eq < 0 {
			return nil, nil, errors.New("extension without '='")
		}
		key := rest[i : i+eq]
		j := i + eq + 1
		// The value runs to the last space before the next unescaped '='.
		k := j
		end := len(rest)
		for k < len(rest) {
			if rest[k] == '\\' {
				k += 2
				continue
			}
			if rest[k] == '=' {
				sp := strings.LastIndexByte(rest[j:k], ' ')
				if sp < 0 {
					return nil, nil, errors.New("unescaped '=' in a value")
				}
				end = j + sp
				break
			}
			k++
		}
		pairs = append(pairs, span{key, rest[j:end]})
		i = end + 1
	}
	for _, p := range pairs {
		v := strings.NewReplacer(`\\`, `\`, `\=`, `=`, `\n`, "\n", `\r`, "\r").Replace(p.val)
		ext[p.key] = v
	}
	return header, ext, nil
}

func TestCEF(t *testing.T) {
	for name, ev := range ocsfTestEvents() {
		t.Run(name, func(t *testing.T) {
			line := string(ev.AppendCEF(nil, DefaultProduct))
			if strings.ContainsAny(line, "\n\r") {
				t.Fatalf("a CEF line with a line break: %q", line)
			}
			h, ext, err := parseCEF(line)
			if err != nil {
				t.Fatalf("%v: %q", err, line)
			}
			if h[0] != "Tollgate" || h[1] != "Tollgate" || h[2] != "dev" {
				t.Errorf("header %q", h)
			}
			if ext["rt"] != "1796637600123" {
				t.Errorf("rt %q", ext["rt"])
			}
		})
	}
	ev := ocsfTestEvents()["ingress denied"]
	h, ext, _ := parseCEF(string(ev.AppendCEF(nil, DefaultProduct)))
	if h[3] != "http:deny" || h[5] != "6" || ext["act"] != "deny" || ext["cs1"] != "istio-system/deny-admin" || ext["cs2"] != "rules[1]" {
		t.Errorf("denied request: header %q ext %v", h, ext)
	}
}

// FuzzCEFEscaping: whatever a client puts in the fields a record takes
// from the request (path, query, host, user agent, a reason naming them),
// the CEF line stays one line and a CEF parser reads back exactly what was
// put in, with no field injected.
func FuzzCEFEscaping(f *testing.F) {
	f.Add("/a|b", "q=1 x=2", "h|o=st", "ua\\ with spaces=", "reason\nwith=newline")
	f.Add("/", "", "host", "", "")
	f.Add("/x", `a\=b`, `h\`, `\\n`, "a=b c=d")
	f.Fuzz(func(t *testing.T, path, query, host, ua, reason string) {
		ev := &Event{Time: time.Unix(1, 0), Kind: Ingress, Method: "GET", Path: path, Query: query, Host: host, UserAgent: ua,
			Status: 403, Decision: &request.Decision{Allow: false, Policy: "ns/p", Rule: 0, Reason: reason}}
		line := string(ev.AppendCEF(nil, Product{Name: "T|g", Vendor: `V\`, Version: "1"}))
		if strings.ContainsAny(line, "\n\r") {
			t.Fatalf("line break in %q", line)
		}
		h, ext, err := parseCEF(line)
		if err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		if h[0] != `V\` || h[1] != "T|g" {
			t.Fatalf("header %q", h)
		}
		if ext["requestClientApplication"] != ua && ua != "" {
			t.Fatalf("user agent %q read back as %q", ua, ext["requestClientApplication"])
		}
		if ext["cs6"] != reason && reason != "" {
			t.Fatalf("reason %q read back as %q", reason, ext["cs6"])
		}
		if want := "http://" + host + path + func() string {
			if query != "" {
				return "?" + query
			}
			return ""
		}(); ext["request"] != want {
			t.Fatalf("request %q read back as %q", want, ext["request"])
		}
		if ext["act"] != "deny" {
			t.Fatalf("act %q: a field was injected", ext["act"])
		}
	})
}
