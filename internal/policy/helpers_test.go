package policy

import (
	"testing"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/request"
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
		doc, err := config.DocumentOf("p.yaml", n)
		if err != nil {
			return nil, err
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

// at sets r's host from an authority as a client would send it, canonicalized
// as every front does (request.ParseAuthority); it panics on one a front would
// refuse, which a test must not describe as judged.
func at(authority string, r request.Request) request.Request {
	a, err := request.ParseAuthority(authority)
	if err != nil {
		panic(err)
	}
	r.Host, r.HostPort = a.Host, a.Port
	return r
}
