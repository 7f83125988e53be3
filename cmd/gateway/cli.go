package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Environment variables for the settings that are per deployment. A flag
// given on the command line wins over its variable, and the variable over
// the gateway file (TOLLGATE_ADMIN_LISTEN over admin.listen).
const (
	envConfig      = "TOLLGATE_CONFIG"
	envLogLevel    = "TOLLGATE_LOG_LEVEL"
	envLogFormat   = "TOLLGATE_LOG_FORMAT"
	envAdminListen = "TOLLGATE_ADMIN_LISTEN"
)

// command is one command's flags and where it writes.
type command struct {
	*flag.FlagSet
	name           string
	stdout, stderr io.Writer
}

// newCommand returns the flags of "gateway name"; synopsis is the first line
// of its usage, with more lines after a blank one.
func newCommand(name, synopsis string, stdout, stderr io.Writer) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	c := &command{FlagSet: fs, name: name, stdout: stdout, stderr: stderr}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: gateway %s\n", synopsis)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return c
}

// parse parses args. Asked for help (-h, -help, --help), it prints the usage
// to stdout and the command ends with 0; a bad flag prints the problem and
// the usage to stderr and the command ends with 2. ok: go on.
func (c *command) parse(args []string) (exit int, ok bool) {
	var errOut bytes.Buffer
	c.SetOutput(&errOut)
	err := c.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		c.SetOutput(c.stdout)
		c.Usage()
		return 0, false
	case err != nil:
		c.stderr.Write(errOut.Bytes())
		return 2, false
	}
	c.SetOutput(c.stderr)
	return 0, true
}

// fail reports a usage problem, then the usage, on stderr; the command ends
// with 2.
func (c *command) fail(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "gateway %s: %s\n\n", c.name, fmt.Sprintf(format, args...))
	c.SetOutput(c.stderr)
	c.Usage()
	return 2
}

// noArgs fails on positional arguments of a command that takes none.
func (c *command) noArgs() (exit int, ok bool) {
	if c.NArg() > 0 {
		return c.fail("unexpected argument %q", c.Arg(0)), false
	}
	return 0, true
}

// configFlag is the -c flag of the commands that read the gateway file.
type configFlag struct{ file string }

func (f *configFlag) register(c *command) {
	c.StringVar(&f.file, "c", "", "the gateway file (default $"+envConfig+"; required)")
}

// resolve returns the gateway file: -c, else $TOLLGATE_CONFIG. A positional
// argument is most likely the file without -c, and is named as such.
func (f *configFlag) resolve(c *command, getenv func(string) string) (string, int, bool) {
	if c.NArg() > 0 {
		if f.file == "" && c.NArg() == 1 {
			return "", c.fail("unexpected argument %q: the gateway file is given with -c (gateway %s -c %s)", c.Arg(0), c.name, c.Arg(0)), false
		}
		return "", c.fail("unexpected argument %q", c.Arg(0)), false
	}
	file := f.file
	if file == "" {
		file = getenv(envConfig)
	}
	if file == "" {
		return "", c.fail("-c is required: name the gateway file (or set $%s)", envConfig), false
	}
	return file, 0, true
}

// choice checks an enumerated flag's value, and names the valid ones.
func choice(flagName, value, source string, valid ...string) error {
	for _, v := range valid {
		if value == v {
			return nil
		}
	}
	if source != "" {
		source = " (from $" + source + ")"
	}
	return fmt.Errorf("invalid -%s %q%s: want %s", flagName, value, source, orList(valid))
}

// orList is "a, b or c".
func orList(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

// envOr is the value of the variable name, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
