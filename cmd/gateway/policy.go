package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"tollgate.dev/tollgate/internal/config"
	"tollgate.dev/tollgate/internal/gateway"
	"tollgate.dev/tollgate/internal/identity"
	"tollgate.dev/tollgate/internal/policy/policycli"
)

const policyUsage = `Usage: gateway policy COMMAND

  gateway policy eval [-c gateway.yaml] [--policies PATH]... [--normalization MODE] [--trust-domain TD] --request FILE|-
      Print the decision record (JSON) for one request description.
  gateway policy test PATH...
      Run policy test files (or directories of them); exit 1 on any failure.
`

func cmdPolicy(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	switch args[0] {
	case "eval":
		return cmdPolicyEval(args[1:], stdin, stdout, stderr)
	case "test":
		return cmdPolicyTest(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return 0
	}
	fmt.Fprintf(stderr, "gateway policy: unknown command %q\n\n%s", args[0], policyUsage)
	return 2
}

// listFlag collects a repeatable flag; each value may also be a comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func cmdPolicyEval(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newCommand("policy eval", `policy eval [-c gateway.yaml] [--policies PATH]... [--normalization MODE] [--trust-domain TD] --request FILE|-

Reads one request description (JSON) and prints the decision record as JSON:
  {"method","host","port","path" (raw request-target, may carry query, fragment, escapes),
   "headers":{name:[values]},"source":{"principal","ip"},"remoteIP","sni","destinationIP",
   "auth":{"principal","audiences","presenter","claims"},"protocol":"http"|"tcp"}
Absent fields are absent attributes. With -c, the gateway's trust domain, normalization, ingress
labels and namespace, and policy files are used, so the answer is the gateway's; without it, Istio's defaults
(trust domain cluster.local, normalization BASE, every policy applies).`, stdout, stderr)
	cfgFile := fs.String("c", "", "gateway configuration to take settings (and, by default, policies) from")
	var policies listFlag
	fs.Var(&policies, "policies", "policy file or directory (repeatable, or comma-separated)")
	norm := fs.String("normalization", "", "path normalization: NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES")
	td := fs.String("trust-domain", "", "trust domain principals are relative to (default cluster.local)")
	reqFile := fs.String("request", "", "request description file, or - for standard input (required)")
	if exit, ok := fs.parse(args); !ok {
		return exit
	}
	if *reqFile == "" {
		return fs.fail("--request is required: a request description file, or - for standard input")
	}
	paths := append(policies, fs.Args()...)
	var s policycli.Settings
	if *cfgFile != "" {
		cfg, err := config.Load(*cfgFile)
		if err != nil {
			printConfigErrors(stderr, err)
			return 1
		}
		s = settingsFrom(cfg)
		if len(paths) == 0 {
			paths = cfg.Policy.Files
		}
	}
	if *norm != "" {
		n, err := policycli.ParseNormalization(*norm)
		if err != nil {
			fmt.Fprintf(stderr, "gateway policy eval: --normalization: %v\n", err)
			return 2
		}
		s.Normalization = n
	}
	if *td != "" {
		s.Policy.TrustDomain = *td
	}
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "gateway policy eval: no policies: give --policies or -c")
		return 2
	}
	in := stdin
	if *reqFile != "-" {
		f, err := os.Open(*reqFile)
		if err != nil {
			fmt.Fprintf(stderr, "gateway policy eval: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	if _, err := policycli.Eval(paths, s, in, stdout); err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	return 0
}

// settingsFrom makes eval answer as the gateway configured by cfg would.
func settingsFrom(cfg *config.Gateway) policycli.Settings {
	opts := gateway.PolicyOptions(cfg)
	if opts.TrustDomain == "" && cfg.Identity.Files != nil {
		// The trust domain the running gateway would take from its SVID.
		if src, err := identity.NewFiles(identity.FilesOptions{Cert: cfg.Identity.Files.Cert, Key: cfg.Identity.Files.Key, Bundle: cfg.Identity.Files.Bundle}); err == nil {
			opts.TrustDomain = src.Status().ID.TrustDomain().Name()
			src.Close()
		}
	}
	s := policycli.Settings{Policy: opts}
	if in := cfg.Ingress; in != nil {
		s.Labels, s.Namespace = in.Labels, in.Namespace
		if n, err := gateway.NormalizationOptions(cfg); err == nil {
			s.Normalization = n
		}
	}
	return s
}

func cmdPolicyTest(args []string, stdout, stderr io.Writer) int {
	fs := newCommand("policy test", `policy test PATH...

Runs table-driven policy tests: each file names its policies (paths relative to
the file, or inline documents), optional settings, and cases of a request
description with the expected decision ("allow" or "deny") and optionally the
deciding policy and rule. Prints every failure with both decisions and the reason,
then "N passed, M failed"; exits 1 on any failure.`, stdout, stderr)
	if exit, ok := fs.parse(args); !ok {
		return exit
	}
	if fs.NArg() == 0 {
		return fs.fail("name policy test files or directories")
	}
	_, failed, err := policycli.Test(fs.Args(), stdout)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	if failed > 0 {
		return 1
	}
	return 0
}
