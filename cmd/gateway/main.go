// Command gateway is Tollgate: a policy-enforcing ingress and egress gateway.
//
//	gateway run -c gateway.yaml      serve
//	gateway check -c gateway.yaml    validate everything run would, print every problem
//	gateway dev                      a complete gateway on this machine, no config needed
//	gateway policy eval|test         ask the policy engine, or run policy tests
//	gateway audit verify PATH...     check an audit journal's hash chain
//	gateway config -c gateway.yaml   print the effective configuration
//	gateway version                  print the version and build information
//	gateway completion bash|zsh|fish print a shell completion script
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `Usage: gateway COMMAND [flags]

Tollgate: a policy-enforcing ingress and egress gateway.

Commands:
  gateway run -c gateway.yaml       serve with a configuration file
  gateway check -c gateway.yaml     validate a configuration (exit 1 on any problem)
  gateway config -c gateway.yaml    print the effective configuration: defaults filled in, secrets elided
  gateway dev                       run a complete demo gateway on this machine
  gateway policy eval ...           print the decision for one request description
  gateway policy test FILE...       run policy test files
  gateway audit verify PATH...      check an audit journal (files or its directory)
  gateway version                   print the version, VCS revision, build date and Go version
  gateway completion bash|zsh|fish  print a shell completion script

Run "gateway COMMAND -h" for a command's flags.

Environment (a flag wins over its variable, a variable over the gateway file):
  TOLLGATE_CONFIG          the gateway file, when -c is not given
  TOLLGATE_LOG_LEVEL       debug, info, warn or error (-log-level)
  TOLLGATE_LOG_FORMAT      text or json (-log-format)
  TOLLGATE_ADMIN_LISTEN    the admin listener's address (replaces admin.listen)
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
		return cmdRun(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "completion":
		return cmdCompletion(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "dev":
		return cmdDev(args[1:], stdout, stderr)
	case "policy":
		return cmdPolicy(args[1:], stdin, stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "version":
		return cmdVersion(args[1:], stdout, stderr)
	case "-v", "-version", "--version":
		buildVersion().print(stdout)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "gateway: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
