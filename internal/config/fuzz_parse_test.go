package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzParse runs the whole loader (decode, defaults, validation) on any
// document; FuzzDecode covers only the decoder on a test struct. The files a
// configuration names are resolved against an empty directory, so every file
// check takes its error path.
//
// Properties:
//   - every failure is Errors, all in the one shape file:line:col: path:
//     problem, naming the file, with a message, sorted, no error twice;
//   - the same input gives the same result and the same error text (errors
//     are reported all at once, never depending on map order).
func FuzzParse(f *testing.F) {
	f.Add(validConfig)
	f.Add(strings.Replace(validConfig, "    pathPrefix: /api", "    pathprefix: /api", 1))
	f.Add(strings.Replace(validConfig, "  listen: 127.0.0.1:8443", "  listen: [a]", 1))
	f.Add(strings.Replace(validConfig, "spiffe://example.org/ns/api/*", "spiffe://Example.org/ns api", 1))
	f.Add(validConfig + "  bad: [unclosed\n")
	f.Add(validConfig + "---\n" + validConfig)
	f.Add("apiVersion: tollgate.dev/v1\nkind: Gateway\n")
	f.Add("")
	examples, _ := filepath.Glob("../../examples/*/gateway.yaml")
	for _, e := range examples {
		if src, err := os.ReadFile(e); err == nil {
			f.Add(string(src))
		}
	}
	file := filepath.Join(f.TempDir(), "gateway.yaml")
	f.Fuzz(func(t *testing.T, src string) {
		g, err := Parse(file, []byte(src))
		if err == nil {
			if g == nil || g.File != file {
				t.Fatalf("no error and no Gateway for %q", src)
			}
			return
		}
		es, ok := AsErrors(err)
		if !ok || len(es) == 0 {
			t.Fatalf("error %T %v is not Errors", err, err)
		}
		for i, e := range es {
			if e.File != file || e.Msg == "" || e.Line < 0 || e.Col < 0 {
				t.Fatalf("malformed error %+v", e)
			}
			if !strings.HasPrefix(e.Error(), file+":") {
				t.Fatalf("error %q does not start with the file", e.Error())
			}
			if i > 0 && es[i-1] == e {
				t.Fatalf("error reported twice: %v", e)
			}
		}
		if !slices.IsSortedFunc(es, func(a, b Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Col - b.Col
		}) {
			t.Fatalf("errors not sorted:\n%v", es)
		}
		_, again := Parse(file, []byte(src))
		if again == nil || again.Error() != err.Error() {
			t.Fatalf("second parse differs:\n%v\nthen:\n%v", err, again)
		}
	})
}
