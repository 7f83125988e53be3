// Command gateway is Tollgate: a policy-enforcing ingress and egress gateway.
//
//	gateway run -c gateway.yaml      serve
//	gateway check -c gateway.yaml    validate everything run would, print every problem
//	gateway dev                      a complete gateway on this machine, no config needed
//	gateway policy eval|test         ask the policy engine, or run policy tests
//	gateway audit verify PATH...     check an audit journal's hash chain
//	gateway version                  print the version
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Tollgate gateway: a policy-enforcing ingress and egress gateway.

Usage:
  gateway run -c gateway.yaml       serve with a configuration file
  gateway check -c gateway.yaml     validate a configuration (exit 1 on any problem)
  gateway dev                       run a complete demo gateway on this machine
  gateway policy eval ...           print the decision for one request description
  gateway policy test FILE...       run policy test files
  gateway audit verify PATH...      check an audit journal (files or its directory)
  gateway version                   print the version

Run "gateway COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "dev":
		return cmdDev(args[1:], stdout, stderr)
	case "policy":
		return cmdPolicy(args[1:], stdin, stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "version", "-v", "--version":
		fmt.Fprintf(stdout, "gateway %s\n", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gateway: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
