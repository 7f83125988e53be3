package policy

import (
	"testing"

	"tollgate.dev/tollgate/internal/config"
)

// compileYAML compiles the policies in src (one or more YAML documents).
func compileYAML(t testing.TB, src string, opts Options) (*Set, error) {
	t.Helper()
	nodes, err := config.ParseDocuments("p.yaml", []byte(src))
	if err != nil {
		return nil, err
	}
	var docs []config.Document
	for _, n := range nodes {
		doc := config.Document{File: "p.yaml", Node: n}
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch n.Content[i].Value {
			case "apiVersion":
				doc.APIVersion = n.Content[i+1].Value
			case "kind":
				doc.Kind = n.Content[i+1].Value
			}
		}
		docs = append(docs, doc)
	}
	return Compile(docs, "v1", opts)
}

func mustCompile(t testing.TB, src string, opts Options) *Set {
	t.Helper()
	s, err := compileYAML(t, src, opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}
