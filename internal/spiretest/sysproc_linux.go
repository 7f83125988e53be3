package spiretest

import "syscall"

// sysProcAttr puts a daemon in its own session, so a signal to the test's process group (what a
// harness sends on timeout) does not hit it half-way; we stop it ourselves, by PID. Pdeathsig
// kills it if the test binary dies without running cleanups (e.g. SIGKILL on a hung test), so no
// SPIRE daemon outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}
