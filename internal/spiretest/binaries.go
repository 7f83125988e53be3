package spiretest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Version is the SPIRE release the binaries are built from (pinned in tools/spire/go.mod).
const Version = "v1.13.3"

// Environment variables read by this package.
const (
	// EnvBin names a folder holding spire-server and spire-agent; it wins over the cache folder.
	EnvBin = "SPIRE_BIN"
	// EnvRequire, when set to anything, turns a missing SPIRE build into a test failure instead
	// of a skip. CI sets it.
	EnvRequire = "TOLLGATE_REQUIRE_SPIRE"
	// EnvCache overrides the cache root ($HOME/.cache/tollgate) used by scripts/spire/install.sh.
	EnvCache = "TOLLGATE_CACHE"
)

// Binaries holds the absolute paths of the two SPIRE executables.
type Binaries struct {
	Server string
	Agent  string
}

// FindBinaries returns where spire-server and spire-agent are: $SPIRE_BIN if set, else the cache
// folder that scripts/spire/install.sh fills.
func FindBinaries() (Binaries, error) {
	dir := os.Getenv(EnvBin)
	if dir == "" {
		root := os.Getenv(EnvCache)
		if root == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return Binaries{}, fmt.Errorf("locate cache: %w (set %s or %s)", err, EnvBin, EnvCache)
			}
			root = filepath.Join(home, ".cache", "tollgate")
		}
		dir = filepath.Join(root, "spire-"+Version, "bin")
	}
	b := Binaries{Server: filepath.Join(dir, "spire-server"), Agent: filepath.Join(dir, "spire-agent")}
	var errs []error
	for _, p := range []string{b.Server, b.Agent} {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			errs = append(errs, err)
		case fi.IsDir() || fi.Mode()&0o111 == 0:
			errs = append(errs, fmt.Errorf("%s is not an executable file", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Binaries{}, fmt.Errorf("spire binaries not found (run scripts/spire/install.sh or set %s): %w", EnvBin, err)
	}
	return b, nil
}

// RequireBinaries returns the SPIRE binaries, or ends the test: Skip normally, Fatal when
// TOLLGATE_REQUIRE_SPIRE is set, so CI can never pass by skipping.
func RequireBinaries(tb testing.TB) Binaries {
	tb.Helper()
	b, err := FindBinaries()
	if err == nil {
		return b
	}
	if os.Getenv(EnvRequire) != "" {
		tb.Fatalf("%s is set: %v", EnvRequire, err)
	}
	tb.Skipf("skipping: %v", err)
	return Binaries{}
}
