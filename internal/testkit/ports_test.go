package testkit

import (
	"net"
	"testing"
)

func TestFreeAddrs(t *testing.T) {
	addrs := FreeAddrs(t, 8)
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Errorf("%s picked twice", a)
		}
		seen[a] = true
		ap, err := net.ResolveTCPAddr("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		if !ap.IP.IsLoopback() || ap.Port < lowPort || ap.Port >= highPort {
			t.Errorf("%s: want 127.0.0.1 and a port in [%d, %d)", a, lowPort, highPort)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s not bindable: %v", a, err)
			continue
		}
		l.Close()
	}
}
