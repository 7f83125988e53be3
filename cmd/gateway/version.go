package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version, when set at build time (-ldflags "-X main.version=v1.2.3"), names
// the release; otherwise the module version the go command stamped is used.
var version = ""

// buildDate, when set at build time (-ldflags "-X main.buildDate=..."), is
// when the binary was built; the build info holds only the commit's time.
var buildDate = ""

// versionInfo is what `gateway version` prints.
type versionInfo struct {
	Version, Module, Revision, CommitTime, BuildDate, Go, Platform string
	Modified                                                       bool
}

// buildVersion reads the version from the build: the -ldflags values, and
// what the go command recorded (module version, VCS revision and time).
func buildVersion() versionInfo {
	v := versionInfo{Version: version, BuildDate: buildDate, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Module = bi.Main.Path
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	return v
}

func (v versionInfo) print(w io.Writer) {
	fmt.Fprintf(w, "gateway %s\n", v.Version)
	row := func(k, val string) {
		if val == "" {
			val = "unknown"
		}
		fmt.Fprintf(w, "  %-9s %s\n", k, val)
	}
	row("module", v.Module)
	rev := v.Revision
	if rev != "" && v.Modified {
		rev += " (modified)"
	}
	row("revision", rev)
	row("committed", v.CommitTime)
	row("built", v.BuildDate)
	row("go", v.Go+" "+v.Platform)
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	c := newCommand("version", "version\n\nPrints the version, the VCS revision and commit time, the build date (when the build\nrecorded one) and the Go version, from the binary's build information.", stdout, stderr)
	if exit, ok := c.parse(args); !ok {
		return exit
	}
	if exit, ok := c.noArgs(); !ok {
		return exit
	}
	buildVersion().print(stdout)
	return 0
}
