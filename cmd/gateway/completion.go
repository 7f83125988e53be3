package main

import (
	"fmt"
	"io"
	"strings"
)

// completionSpec is what the shells complete: each command (and subcommand),
// its flags, and the values of enumerated flags. A test checks it against
// the commands' real flag sets, so a flag added to a command cannot be
// missing here.
var completionSpec = []struct {
	cmd   string // "run", "policy eval"
	flags []string
}{
	{"run", []string{"c", "log-level", "log-format"}},
	{"check", []string{"c"}},
	{"config", []string{"c"}},
	{"dev", []string{"dir", "listen", "admin", "egress", "log-level", "log-format"}},
	{"dev pki", []string{"out", "trust-domain", "ttl"}},
	{"dev echo", []string{"listen", "cert", "key", "bundle", "workload-api", "spiffe-id", "allow", "log-level", "log-format"}},
	{"policy eval", []string{"c", "policies", "normalization", "trust-domain", "request"}},
	{"policy test", nil},
	{"audit verify", []string{"key"}},
	{"version", nil},
	{"completion", nil},
}

// flagValues are the values of the enumerated flags.
var flagValues = map[string][]string{
	"log-level":     logLevels,
	"log-format":    logFormats,
	"normalization": {"NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"},
}

var shells = []string{"bash", "zsh", "fish"}

func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	c := newCommand("completion", "completion bash|zsh|fish\n\nPrints a completion script for the shell. To load it:\n  bash:  source <(gateway completion bash)     (or save it in /etc/bash_completion.d/gateway)\n  zsh:   source <(gateway completion zsh)      (bash-style completion through bashcompinit)\n  fish:  gateway completion fish | source      (or save it in ~/.config/fish/completions/gateway.fish)", stdout, stderr)
	if exit, ok := c.parse(args); !ok {
		return exit
	}
	if c.NArg() != 1 {
		return c.fail("name one shell: %s", orList(shells))
	}
	switch c.Arg(0) {
	case "bash":
		io.WriteString(stdout, bashCompletion())
	case "zsh":
		io.WriteString(stdout, "#compdef gateway\nautoload -U +X bashcompinit && bashcompinit\n"+bashCompletion())
	case "fish":
		io.WriteString(stdout, fishCompletion())
	default:
		return c.fail("unknown shell %q: want %s", c.Arg(0), orList(shells))
	}
	return 0
}

// topCommands are the first words: each command, or the group of subcommands.
func topCommands() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range completionSpec {
		top, _, _ := strings.Cut(s.cmd, " ")
		if !seen[top] {
			seen[top] = true
			out = append(out, top)
		}
	}
	return out
}

// subcommands are the second words of the group top.
func subcommands(top string) []string {
	var out []string
	for _, s := range completionSpec {
		if t, sub, ok := strings.Cut(s.cmd, " "); ok && t == top {
			out = append(out, sub)
		}
	}
	return out
}

func bashCompletion() string {
	var b strings.Builder
	b.WriteString(`# bash completion for gateway (Tollgate): gateway completion bash
_gateway() {
    local cur prev cmd words
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    COMPREPLY=()
    if [ "$COMP_CWORD" -eq 1 ]; then
`)
	fmt.Fprintf(&b, "        COMPREPLY=( $(compgen -W %q -- \"$cur\") )\n        return 0\n    fi\n", strings.Join(topCommands(), " "))
	b.WriteString("    cmd=\"${COMP_WORDS[1]}\"\n    case \"$cmd\" in\n")
	for _, top := range topCommands() {
		if subs := subcommands(top); len(subs) > 0 {
			fmt.Fprintf(&b, "    %s)\n        if [ \"$COMP_CWORD\" -eq 2 ]; then\n            COMPREPLY=( $(compgen -W %q -- \"$cur\") )\n            return 0\n        fi\n        cmd=\"%s ${COMP_WORDS[2]}\" ;;\n", top, strings.Join(subs, " "), top)
		}
	}
	b.WriteString("    esac\n    case \"$prev\" in\n")
	for _, name := range []string{"log-level", "log-format", "normalization"} {
		fmt.Fprintf(&b, "    -%s|--%s)\n        COMPREPLY=( $(compgen -W %q -- \"$cur\") )\n        return 0 ;;\n", name, name, strings.Join(flagValues[name], " "))
	}
	b.WriteString("    esac\n    case \"$cmd\" in\n")
	for _, s := range completionSpec {
		words := ""
		for _, f := range s.flags {
			words += " -" + f
		}
		if s.cmd == "completion" {
			words = strings.Join(shells, " ")
		}
		fmt.Fprintf(&b, "    %q) words=%q ;;\n", s.cmd, strings.TrimSpace(words))
	}
	b.WriteString(`    *) words="" ;;
    esac
    if [[ "$cur" == -* || "$cmd" == completion ]]; then
        COMPREPLY=( $(compgen -W "$words" -- "$cur") )
    else
        COMPREPLY=( $(compgen -f -- "$cur") )
    fi
    return 0
}
complete -o filenames -F _gateway gateway
`)
	return b.String()
}

func fishCompletion() string {
	var b strings.Builder
	b.WriteString("# fish completion for gateway (Tollgate): gateway completion fish | source\n")
	fmt.Fprintf(&b, "complete -c gateway -f -n '__fish_use_subcommand' -a %q\n", strings.Join(topCommands(), " "))
	for _, top := range topCommands() {
		if subs := subcommands(top); len(subs) > 0 {
			fmt.Fprintf(&b, "complete -c gateway -f -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a %q\n",
				top, strings.Join(subs, " "), strings.Join(subs, " "))
		}
	}
	for _, s := range completionSpec {
		cond := "__fish_seen_subcommand_from " + s.cmd
		if top, sub, ok := strings.Cut(s.cmd, " "); ok {
			cond = "__fish_seen_subcommand_from " + top + "; and __fish_seen_subcommand_from " + sub
		}
		if s.cmd == "completion" {
			fmt.Fprintf(&b, "complete -c gateway -f -n '%s' -a %q\n", cond, strings.Join(shells, " "))
		}
		for _, f := range s.flags {
			line := fmt.Sprintf("complete -c gateway -n '%s' -o %s", cond, f)
			if vs, ok := flagValues[f]; ok {
				line += fmt.Sprintf(" -x -a %q", strings.Join(vs, " "))
			} else {
				line += " -r"
			}
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
