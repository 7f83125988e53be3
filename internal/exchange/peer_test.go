package exchange

import "testing"

// FuzzPeerText checks that the audit event's client address, taken from the
// peer address as net/http wrote it when that can be done without
// formatting, is always exactly the text of the address routing and policy
// use (netip's, after unmapping).
func FuzzPeerText(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:443", "10.1.2.3:1", "[::1]:443", "[2001:db8::1]:8443", "[2001:0db8::1]:1", "[::ffff:192.0.2.1]:443",
		"[fe80::1%eth0]:443", "[::]:0", "0.0.0.0:0", "1.2.3.4", ":443", "", "garbage:1", "[1.2.3.4]:5", "01.2.3.4:5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, remote string) {
		ip := clientAddr(remote).Addr()
		if got, want := peerText(ip, remote), ip.String(); got != want {
			t.Errorf("peerText(%v, %q) = %q, want %q", ip, remote, got, want)
		}
	})
}

func TestPeerTextAllocations(t *testing.T) {
	const remote = "192.0.2.1:443"
	ip := clientAddr(remote).Addr()
	if n := testing.AllocsPerRun(100, func() { peerText(ip, remote) }); n != 0 {
		t.Errorf("peerText allocates %v times for a plain address, want 0", n)
	}
}
