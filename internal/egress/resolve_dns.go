package egress

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DefaultDNSTimeout bounds one lookup at one server, as Smokescreen's
// --dns-timeout does by default.
const DefaultDNSTimeout = 5 * time.Second

// maxTTL caps what a DNS answer may ask to be kept for: a day-long TTL on
// an address that changed would keep the gateway dialling the old one.
const maxTTL = 5 * time.Minute

// DNSResolver asks the DNS servers named in the config (Smokescreen's
// --resolver-address) instead of the system's resolver, and reports the TTL
// of each answer so that a Cache keeps it no longer. Servers are tried in
// order; a "no such host" answer from one is final.
type DNSResolver struct {
	servers []string
	timeout time.Duration
}

// NewDNSResolver checks the server addresses ("ip" or "ip:port", port 53 by
// default). timeout ≤ 0 is DefaultDNSTimeout.
func NewDNSResolver(servers []string, timeout time.Duration) (*DNSResolver, error) {
	if len(servers) == 0 {
		return nil, errors.New("egress: no DNS servers")
	}
	r := &DNSResolver{timeout: timeout}
	if r.timeout <= 0 {
		r.timeout = DefaultDNSTimeout
	}
	for _, s := range servers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			a, aerr := netip.ParseAddr(strings.Trim(s, "[]"))
			if aerr != nil {
				return nil, fmt.Errorf("egress: DNS server %q: want an IP address, with or without a port", s)
			}
			ap = netip.AddrPortFrom(a, 53)
		}
		r.servers = append(r.servers, ap.String())
	}
	return r, nil
}

// LookupNetIP returns the addresses of host.
func (r *DNSResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	addrs, _, err := r.LookupNetIPTTL(ctx, network, host)
	return addrs, err
}

// LookupNetIPTTL returns the addresses of host (A and AAAA records for
// network "ip") and the smallest TTL of the records that gave them, CNAMEs
// included, capped at five minutes. Errors are *net.DNSError.
func (r *DNSResolver) LookupNetIPTTL(ctx context.Context, network, host string) ([]netip.Addr, time.Duration, error) {
	var types []dnsmessage.Type
	switch network {
	case "ip":
		types = []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA}
	case "ip4":
		types = []dnsmessage.Type{dnsmessage.TypeA}
	case "ip6":
		types = []dnsmessage.Type{dnsmessage.TypeAAAA}
	default:
		return nil, 0, &net.DNSError{Err: "unsupported network " + network, Name: host}
	}
	name, err := dnsmessage.NewName(strings.TrimSuffix(host, ".") + ".")
	if err != nil {
		return nil, 0, &net.DNSError{Err: "invalid name", Name: host, IsNotFound: true}
	}
	var lastErr error
	for _, server := range r.servers {
		addrs, ttl, err := r.ask(ctx, server, name, types)
		if err == nil {
			return addrs, ttl, nil
		}
		lastErr = err
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound || ctx.Err() != nil {
			break
		}
	}
	return nil, 0, lastErr
}

type dnsAnswer struct {
	addrs    []netip.Addr
	ttl      time.Duration
	notFound bool
	err      error
}

// ask sends one query per record type to one server, concurrently.
func (r *DNSResolver) ask(ctx context.Context, server string, name dnsmessage.Name, types []dnsmessage.Type) ([]netip.Addr, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	answers := make([]dnsAnswer, len(types))
	var wg sync.WaitGroup
	for i, t := range types {
		wg.Go(func() { answers[i] = dnsExchange(ctx, server, name, t) })
	}
	wg.Wait()
	var (
		addrs    []netip.Addr
		ttl      = maxTTL
		notFound = true
	)
	for _, a := range answers {
		if a.err != nil {
			return nil, 0, dnsError(a.err, name, server)
		}
		addrs = append(addrs, a.addrs...)
		ttl = min(ttl, a.ttl)
		notFound = notFound && a.notFound
	}
	if len(addrs) == 0 || notFound {
		return nil, 0, &net.DNSError{Err: "no such host", Name: hostOf(name), Server: server, IsNotFound: true}
	}
	return addrs, ttl, nil
}

func dnsError(err error, name dnsmessage.Name, server string) error {
	de := &net.DNSError{Err: err.Error(), Name: hostOf(name), Server: server, UnwrapErr: err}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		de.IsTimeout, de.IsTemporary = true, true
	case errors.Is(err, context.Canceled):
	default:
		de.IsTemporary = true
	}
	return de
}

func hostOf(n dnsmessage.Name) string { return strings.TrimSuffix(n.String(), ".") }

// dnsExchange asks over UDP, and again over TCP when the answer was truncated.
func dnsExchange(ctx context.Context, server string, name dnsmessage.Name, t dnsmessage.Type) dnsAnswer {
	var idb [2]byte
	_, _ = rand.Read(idb[:]) // crypto/rand.Read does not fail
	id := binary.BigEndian.Uint16(idb[:])
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: t, Class: dnsmessage.ClassINET}},
	}
	msg, err := q.Pack()
	if err != nil {
		return dnsAnswer{err: err}
	}
	a, truncated := roundTrip(ctx, "udp", server, msg, id, name, t)
	if truncated {
		a, _ = roundTrip(ctx, "tcp", server, msg, id, name, t)
	}
	return a
}

func roundTrip(ctx context.Context, network, server string, msg []byte, id uint16, name dnsmessage.Name, t dnsmessage.Type) (dnsAnswer, bool) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, server)
	if err != nil {
		return dnsAnswer{err: err}, false
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if network == "tcp" {
		framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
		if _, err := c.Write(append(framed, msg...)); err != nil {
			return dnsAnswer{err: err}, false
		}
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return dnsAnswer{err: err}, false
		}
		buf := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, buf); err != nil {
			return dnsAnswer{err: err}, false
		}
		a, _, err := parseAnswer(buf, id, name, t)
		if err != nil {
			return dnsAnswer{err: err}, false
		}
		return a, false
	}
	if _, err := c.Write(msg); err != nil {
		return dnsAnswer{err: err}, false
	}
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return dnsAnswer{err: err}, false
		}
		// An answer with another ID or question is someone else's, or a
		// spoofing attempt: wait for ours until the deadline.
		a, truncated, err := parseAnswer(buf[:n], id, name, t)
		if errors.Is(err, errNotOurs) {
			continue
		}
		if err != nil {
			return dnsAnswer{err: err}, false
		}
		return a, truncated
	}
}

var errNotOurs = errors.New("dns answer does not match the query")

// parseAnswer reads the records of type t that belong to name, following
// CNAMEs from name (records for other names are ignored: a server can't
// slip in an address for a name we did not ask about).
func parseAnswer(buf []byte, id uint16, name dnsmessage.Name, t dnsmessage.Type) (dnsAnswer, bool, error) {
	var p dnsmessage.Parser
	h, err := p.Start(buf)
	if err != nil || h.ID != id || !h.Response {
		return dnsAnswer{}, false, errNotOurs
	}
	q, err := p.Question()
	if err != nil || !strings.EqualFold(q.Name.String(), name.String()) || q.Type != t || q.Class != dnsmessage.ClassINET {
		return dnsAnswer{}, false, errNotOurs
	}
	if h.Truncated {
		return dnsAnswer{}, true, nil
	}
	switch h.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return dnsAnswer{notFound: true, ttl: maxTTL}, false, nil
	default:
		return dnsAnswer{}, false, fmt.Errorf("server answered %v", h.RCode)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return dnsAnswer{}, false, err
	}
	type rec struct {
		addr netip.Addr
		ttl  uint32
	}
	addrs := map[string][]rec{}
	cnames := map[string]cnameRec{}
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return dnsAnswer{}, false, err
		}
		owner := strings.ToLower(rh.Name.String())
		switch {
		case rh.Class != dnsmessage.ClassINET:
			err = p.SkipAnswer()
		case rh.Type == dnsmessage.TypeA && t == dnsmessage.TypeA:
			var r dnsmessage.AResource
			if r, err = p.AResource(); err == nil {
				addrs[owner] = append(addrs[owner], rec{netip.AddrFrom4(r.A), rh.TTL})
			}
		case rh.Type == dnsmessage.TypeAAAA && t == dnsmessage.TypeAAAA:
			var r dnsmessage.AAAAResource
			if r, err = p.AAAAResource(); err == nil {
				addrs[owner] = append(addrs[owner], rec{netip.AddrFrom16(r.AAAA), rh.TTL})
			}
		case rh.Type == dnsmessage.TypeCNAME:
			var r dnsmessage.CNAMEResource
			if r, err = p.CNAMEResource(); err == nil {
				cnames[owner] = cnameRec{strings.ToLower(r.CNAME.String()), rh.TTL}
			}
		default:
			err = p.SkipAnswer()
		}
		if err != nil {
			return dnsAnswer{}, false, err
		}
	}
	ans := dnsAnswer{ttl: maxTTL}
	cur := strings.ToLower(name.String())
	for range 8 { // CNAME chains longer than this are a loop or an attack
		if rs := addrs[cur]; len(rs) > 0 {
			for _, r := range rs {
				ans.addrs = append(ans.addrs, r.addr)
				ans.ttl = min(ans.ttl, time.Duration(r.ttl)*time.Second)
			}
			return ans, false, nil
		}
		c, ok := cnames[cur]
		if !ok {
			break
		}
		ans.ttl = min(ans.ttl, time.Duration(c.ttl)*time.Second)
		cur = c.target
	}
	return dnsAnswer{ttl: ans.ttl}, false, nil // no data of this type
}

type cnameRec struct {
	target string
	ttl    uint32
}
