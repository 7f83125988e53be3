package config

import (
	"strings"
	"testing"
	"time"
)

type testRoute struct {
	Host    string        `yaml:"host"`
	Timeout time.Duration `yaml:"timeout"`
	Ports   []int         `yaml:"ports"`
	Enabled bool          `yaml:"enabled"`
}

type testDoc struct {
	Name   string            `yaml:"name"`
	Routes []testRoute       `yaml:"routes"`
	Labels map[string]string `yaml:"labels"`
	Nested *struct {
		A string `yaml:"a"`
	} `yaml:"nested"`
}

func TestDecoderErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every line of the sorted error, in order
	}{
		{
			name: "valid",
			src:  "name: x\nroutes:\n- host: a\n  timeout: 2s\n  ports: [1, 2]\n  enabled: true\nlabels: {a: b}\nnested: {a: q}\n",
		},
		{
			name: "unknown field with suggestion",
			src:  "name: x\nroute:\n- host: a\n",
			want: []string{`f.yaml:2:1: route: unknown field (did you mean "routes"?)`},
		},
		{
			name: "wrong types reported together and sorted",
			src:  "name: [a]\nroutes:\n- host: a\n  timeout: 5\n  ports: [x]\n  enabled: yes please\n",
			want: []string{
				`f.yaml:1:7: name: wrong type (got list , want string)`,
				`f.yaml:4:12: routes[0].timeout: wrong type (got integer "5", want duration such as "10s")`,
				`f.yaml:5:11: routes[0].ports[0]: wrong type (got string "x", want integer)`,
				`f.yaml:6:12: routes[0].enabled: wrong type (got string "yes please", want boolean)`,
			},
		},
		{
			name: "duplicate keys",
			src:  "name: a\nname: b\nlabels: {k: 1, k: 2}\n",
			want: []string{
				`f.yaml:2:1: name: duplicate field "name"`,
				`f.yaml:3:16: labels.k: duplicate key "k"`,
			},
		},
		{
			name: "bad duration",
			src:  "routes:\n- timeout: soon\n",
			want: []string{`f.yaml:2:12: routes[0].timeout: invalid duration (got "soon", want a non-negative duration such as "10s" or "1m30s")`},
		},
		{
			name: "not a mapping",
			src:  "- a\n- b\n",
			want: []string{`f.yaml:1:1: wrong type (got list , want mapping)`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := ParseDocuments("f.yaml", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			d := NewDecoder("f.yaml")
			var doc testDoc
			d.Decode(docs[0], "", &doc)
			var got []string
			if err := d.Errs.Err(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}

// A syntax error is reported where it is, column included, not at column 1.
func TestParseDocumentsSyntaxError(t *testing.T) {
	for _, tc := range []struct{ src, at string }{
		{"a: b\n  c: : d\n", "bad.yaml:2:6:"},
		{"a: 1\nb: c: d\n", "bad.yaml:2:4:"},       // the second mapping value
		{"a:\n\tb: 1\n", "bad.yaml:2:1:"},          // the tab
		{"key: \"unterminated\n", "bad.yaml:1:6:"}, // the opening quote
		{"a: [1, 2\nb: 3\n", "bad.yaml:2:1:"},
	} {
		_, err := ParseDocuments("bad.yaml", []byte(tc.src))
		if err == nil || !strings.HasPrefix(err.Error(), tc.at+" invalid YAML:") {
			t.Errorf("%q: got %v, want it at %s", tc.src, err, tc.at)
		}
	}
}

func TestParseDocumentsMulti(t *testing.T) {
	docs, err := ParseDocuments("m.yaml", []byte("a: 1\n---\nb: 2\n---\n"))
	if err != nil || len(docs) != 2 {
		t.Fatalf("docs=%d err=%v", len(docs), err)
	}
	if docs[1].Line != 3 {
		t.Errorf("second document line = %d, want 3", docs[1].Line)
	}
}

func TestErrorfUsesRecordedPosition(t *testing.T) {
	docs, _ := ParseDocuments("p.yaml", []byte("routes:\n- host: a\n  enabled: true\n"))
	d := NewDecoder("p.yaml")
	var doc testDoc
	d.Decode(docs[0], "", &doc)
	d.Errorf("routes[0].host", "duplicate route (also at %s)", "x")
	d.Errorf("routes[0].missing", "required")
	got := d.Errs.Err().Error()
	want := "p.yaml:2:3: routes[0].missing: required\np.yaml:2:9: routes[0].host: duplicate route (also at x)"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("name: x\nroutes:\n- host: a\n  timeout: 2s\n")
	f.Add("labels: {a: b}\nnested: {a: [1]}\n")
	f.Add("&a x: *a\n")
	f.Fuzz(func(t *testing.T, src string) {
		docs, err := ParseDocuments("f.yaml", []byte(src))
		if err != nil {
			return
		}
		for _, doc := range docs {
			d := NewDecoder("f.yaml")
			var v testDoc
			d.Decode(doc, "", &v)
			for _, e := range d.Errs {
				if e.File != "f.yaml" || e.Msg == "" {
					t.Fatalf("malformed error %+v", e)
				}
			}
		}
	})
}
