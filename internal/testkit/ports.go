// Package testkit holds small helpers shared by tests of several packages.
package testkit

// FreePorts and FreeAddrs pick loopback ports for tests that must name a port
// before the process that binds it starts (a child daemon, or a peer that must
// know the address first).
//
// Ports are picked below Linux's default ephemeral range (32768-60999), so no
// listener on port 0 elsewhere in the test run (every other test's servers)
// can be handed one of them in the window between picking and binding.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

const (
	lowPort  = 20000
	highPort = 32000 // exclusive; below the ephemeral range
)

// FreePorts returns n distinct 127.0.0.1 ports that were free when picked. They
// are not reserved: a caller whose daemon loses a port should retry.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	seen := make(map[int]bool, n)
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts == 1000 {
			return nil, fmt.Errorf("testkit: no free port in [%d, %d) after %d attempts", lowPort, highPort, attempts)
		}
		p := lowPort + rand.IntN(highPort-lowPort)
		if seen[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		l.Close()
		seen[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// FreeAddrs is FreePorts as "127.0.0.1:port" addresses, failing tb on error.
func FreeAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	ports, err := FreePorts(n)
	if err != nil {
		tb.Fatal(err)
	}
	addrs := make([]string, n)
	for i, p := range ports {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return addrs
}
