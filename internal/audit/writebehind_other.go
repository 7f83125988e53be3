//go:build !linux

package audit

import (
	"errors"
	"os"
)

// startWriteback is Linux's sync_file_range; elsewhere the kernel's own
// writeback is left alone.
func startWriteback(*os.File) error { return errors.ErrUnsupported }
