package policycli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/policy"
)

// testFile is one file of table-driven policy tests.
type testFile struct {
	// Policies are paths (relative to the test file) or inline documents.
	Policies []policyEntry `yaml:"policies"`
	Settings testSettings  `yaml:"settings"`
	Cases    []testCase    `yaml:"cases"`
}

type testSettings struct {
	TrustDomain        string            `yaml:"trustDomain"`
	TrustDomainAliases []string          `yaml:"trustDomainAliases"`
	RootNamespace      string            `yaml:"rootNamespace"`
	Normalization      string            `yaml:"normalization"`
	Labels             map[string]string `yaml:"labels"`
	Namespace          string            `yaml:"namespace"`
}

type testCase struct {
	Name    string      `yaml:"name"`
	Request Description `yaml:"request"`
	// Want is "allow" or "deny".
	Want   string `yaml:"want"`
	Policy string `yaml:"policy"`
	Rule   *int   `yaml:"rule"`
}

// policyEntry is a path or an inline policy document.
type policyEntry struct {
	path string
	node *yaml.Node
}

// UnmarshalConfig implements config.Unmarshaler.
func (p *policyEntry) UnmarshalConfig(d *config.Decoder, node *yaml.Node, path string) {
	switch {
	case node.Kind == yaml.ScalarNode && node.ShortTag() == "!!str" && node.Value != "":
		p.path = node.Value
	case node.Kind == yaml.MappingNode:
		p.node = node
	default:
		d.NodeErrorf(node, path, "want a path or an inline policy document")
	}
}

// Test is `gateway policy test`: it runs every test file of paths (files, or
// directories of *.yaml files), writes each failure with both decisions and the
// reason, and ends with "N passed, M failed". err reports files that could not
// be run; the caller exits 1 when err != nil or failed > 0.
func Test(paths []string, out io.Writer) (passed, failed int, err error) {
	files, err := testFiles(paths)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, f := range files {
		p, fl, err := runFile(f, out)
		passed, failed = passed+p, failed+fl
		if err != nil {
			fmt.Fprintf(out, "ERROR %s\n", indent(err.Error()))
			errs = append(errs, err)
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", passed, failed)
	return passed, failed, errors.Join(errs...)
}

func testFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return files, fmt.Errorf("test file: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			return files, fmt.Errorf("test directory: %w", err)
		}
	}
	return files, nil
}

func runFile(file string, out io.Writer) (passed, failed int, err error) {
	nodes, err := config.ReadDocuments(file)
	if err != nil {
		return 0, 0, err
	}
	for _, n := range nodes {
		d := config.NewDecoder(file)
		var tf testFile
		d.Decode(n, "", &tf)
		for i, c := range tf.Cases {
			if c.Want != "allow" && c.Want != "deny" {
				d.Errorf(fmt.Sprintf("cases[%d].want", i), `want "allow" or "deny" (got %q)`, c.Want)
			}
		}
		if len(tf.Cases) == 0 {
			d.Errorf("cases", "no test cases")
		}
		for field, ns := range map[string]string{"namespace": tf.Settings.Namespace, "rootNamespace": tf.Settings.RootNamespace} {
			if ns == "" {
				continue
			}
			if err := config.CheckNamespace(ns); err != nil {
				d.Errorf("settings."+field, "%v", err)
			}
		}
		if err := d.Errs.Err(); err != nil {
			return passed, failed, err
		}
		p, f, err := runCases(file, d, &tf, out)
		passed, failed = passed+p, failed+f
		if err != nil {
			return passed, failed, err
		}
	}
	return passed, failed, nil
}

func runCases(file string, d *config.Decoder, tf *testFile, out io.Writer) (passed, failed int, err error) {
	s := Settings{
		Policy: policy.Options{TrustDomain: tf.Settings.TrustDomain, TrustDomainAliases: tf.Settings.TrustDomainAliases,
			RootNamespace: tf.Settings.RootNamespace},
		Labels:    tf.Settings.Labels,
		Namespace: tf.Settings.Namespace,
	}
	if s.Normalization, err = ParseNormalization(tf.Settings.Normalization); err != nil {
		return 0, 0, fmt.Errorf("%s: settings.normalization: %w", file, err)
	}
	set, err := compileEntries(file, tf.Policies, s.Policy)
	if err != nil {
		return 0, 0, err
	}
	eng := engine(set, s)
	for i, c := range tf.Cases {
		pos := d.Pos(fmt.Sprintf("cases[%d]", i))
		name := fmt.Sprintf("%s:%d: %s", file, pos.Line, c.Name)
		req, err := c.Request.Request(s.normalization(), s.TrustedProxies)
		if err != nil {
			fmt.Fprintf(out, "FAIL %s\n  request: %v\n", name, err)
			failed++
			continue
		}
		got := eng.Decide(req)
		if problem := compare(c, got); problem != "" {
			fmt.Fprintf(out, "FAIL %s\n  want: %s\n  got:  %s\n  reason: %s\n", name, describeWant(c), describe(got), got.Reason)
			failed++
			continue
		}
		passed++
	}
	return passed, failed, nil
}

func compileEntries(file string, entries []policyEntry, opts policy.Options) (*policy.Set, error) {
	var paths []string
	var docs []config.Document
	for _, e := range entries {
		if e.node != nil {
			doc, err := config.DocumentOf(file, e.node)
			if err != nil {
				return nil, err
			}
			// A misspelled kind would otherwise be skipped, and the cases run
			// without the policy they were written for.
			if !policy.Owns(doc) {
				p := doc.Position()
				return nil, config.Errors{{File: p.File, Line: p.Line, Col: p.Col,
					Msg: fmt.Sprintf("policies: an inline document must be an AuthorizationPolicy (got kind %q)", doc.Kind)}}
			}
			docs = append(docs, doc)
			continue
		}
		p := e.path
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(file), p)
		}
		paths = append(paths, p)
	}
	version := "test"
	if len(paths) > 0 {
		set, err := config.LoadDocuments(paths)
		if err != nil {
			return nil, err
		}
		docs = append(set.Documents, docs...)
		version = set.Version
	}
	return policy.Compile(docs, version, opts)
}

func compare(c testCase, got policy.Decision) string {
	switch {
	case got.Allow != (c.Want == "allow"):
		return "outcome"
	case c.Policy != "" && got.Policy != c.Policy:
		return "policy"
	case c.Rule != nil && got.Rule != *c.Rule:
		return "rule"
	}
	return ""
}

func describeWant(c testCase) string {
	s := c.Want
	if c.Policy != "" {
		s += " by " + c.Policy
	}
	if c.Rule != nil {
		s += fmt.Sprintf(" rule %d", *c.Rule)
	}
	return s
}

func describe(d policy.Decision) string {
	s := "deny"
	if d.Allow {
		s = "allow"
	}
	if d.Policy != "" {
		s += fmt.Sprintf(" by %s rule %d", d.Policy, d.Rule)
	}
	return s
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }
