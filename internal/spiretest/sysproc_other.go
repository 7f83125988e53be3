//go:build unix && !linux

package spiretest

import "syscall"

// sysProcAttr puts a daemon in its own session, so a signal to the test's process group does not
// hit it half-way; we stop it ourselves, by PID.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}
