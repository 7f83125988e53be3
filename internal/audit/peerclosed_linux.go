package audit

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the TCP connection under c has left the
// ESTABLISHED state: the peer's FIN (or a reset) has arrived. It asks the
// kernel, so it knows at once, where the connection's reader goroutine
// learns it only once the scheduler runs it, and even while unread data
// (a TLS session ticket) sits before the FIN.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		closed = err == nil && info.State != unix.BPF_TCP_ESTABLISHED
	})
	return closed
}
