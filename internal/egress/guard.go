package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// DefaultDialTimeout bounds one connection attempt when GuardOptions has none.
const DefaultDialTimeout = 10 * time.Second

// GuardOptions configure a Guard. The zero value refuses every address that
// is not Public and looks names up with the system's resolver.
type GuardOptions struct {
	// Resolver looks names up; nil is net.DefaultResolver (no cache of ours:
	// it hides TTLs, and the host's stub resolver caches by them). Use a
	// Cache around a DNSResolver for the servers named in the config.
	Resolver Resolver
	// Allow admits addresses that their class would refuse (a service on a
	// private network that workloads may call). An address of the gateway's
	// own is admitted only by an entry for exactly that address (/32, /128):
	// a wide range such as 10.0.0.0/8 must not open the gateway's own admin
	// listener. An IPv6 form that embeds IPv4 is admitted only by an IPv6
	// entry: 127.0.0.0/8 does not admit ::ffff:127.0.0.1.
	Allow []netip.Prefix
	// Deny refuses addresses even when they are Public or in Allow (unlike
	// Smokescreen, where an allowed range won over a denied address,
	// smokescreen#236).
	Deny []netip.Prefix
	// OwnAddrs are the gateway's addresses beyond its interfaces' (a load
	// balancer's, a NAT's public address).
	OwnAddrs []netip.Addr
	// DialTimeout bounds each connection attempt; 0 is DefaultDialTimeout.
	DialTimeout time.Duration
	// UnsafeAllowMixed dials the allowed addresses of an answer that also
	// holds refused ones. Off, such an answer is refused: a name that points
	// both outside and inside is the shape of a DNS-rebinding attack, and
	// dropping the inside addresses would hide the attempt.
	UnsafeAllowMixed bool

	// interfaceAddrs replaces net.InterfaceAddrs in tests.
	interfaceAddrs func() ([]net.Addr, error)
}

// Guard is the egress SSRF guard: it resolves a destination once, classifies
// every address, and dials only addresses it checked. Safe for concurrent
// use; immutable after NewGuard.
type Guard struct {
	resolver    Resolver
	allow       []netip.Prefix
	deny        []netip.Prefix
	own         map[netip.Addr]struct{}
	dialTimeout time.Duration
	allowMixed  bool
}

// NewGuard builds a Guard. The gateway's own addresses are read from its
// interfaces now, once; an error doing so is returned rather than guessed
// around (the guard would not know what "own" is).
func NewGuard(o GuardOptions) (*Guard, error) {
	g := &Guard{
		resolver:    o.Resolver,
		dialTimeout: o.DialTimeout,
		allowMixed:  o.UnsafeAllowMixed,
		own:         make(map[netip.Addr]struct{}),
	}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	if g.dialTimeout <= 0 {
		g.dialTimeout = DefaultDialTimeout
	}
	for _, list := range []struct {
		name string
		in   []netip.Prefix
		out  *[]netip.Prefix
	}{{"allow", o.Allow, &g.allow}, {"deny", o.Deny, &g.deny}} {
		for _, p := range list.in {
			if !p.IsValid() {
				return nil, fmt.Errorf("egress: %s list: invalid prefix %v", list.name, p)
			}
			*list.out = append(*list.out, p.Masked())
		}
	}
	ifaddrs := o.interfaceAddrs
	if ifaddrs == nil {
		ifaddrs = net.InterfaceAddrs
	}
	as, err := ifaddrs()
	if err != nil {
		return nil, fmt.Errorf("egress: read the gateway's own addresses: %w", err)
	}
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				g.own[ip.Unmap()] = struct{}{}
			}
		}
	}
	for _, a := range o.OwnAddrs {
		g.own[a.Unmap().WithZone("")] = struct{}{}
	}
	return g, nil
}

// Verdict is the judgement of one address.
type Verdict struct {
	Addr    netip.Addr `json:"addr"`
	Class   Class      `json:"class"`
	Allowed bool       `json:"allowed"`
	// By names the list that decided against the class: "allow-list" or
	// "deny-list"; empty when the class alone decided.
	By string `json:"by,omitempty"`
}

// Decision is the guard's record of one destination, for the audit event:
// what was asked, every address it resolved to with its class, and the one
// to dial or the one that was refused. Check fills it on refusal too.
type Decision struct {
	// Host is the canonical host: a name, a dotted quad, or "[v6]"; an
	// address in any other spelling ("0x7f.1") is written canonically.
	Host string `json:"host"`
	Port int    `json:"port,omitempty"`
	// Literal is true when Host was an address: nothing was looked up.
	Literal bool `json:"literal,omitempty"`
	Allow   bool `json:"allow"`
	// Addr is the first address to dial when allowed, the address that
	// decided the refusal otherwise; zero when nothing was resolved.
	Addr  netip.Addr `json:"addr,omitzero"`
	Class Class      `json:"class"`
	// Reason says why in words.
	Reason string `json:"reason"`
	// Addrs is every address of the answer, in the resolver's order.
	Addrs []Verdict `json:"addrs,omitempty"`
}

// Dialable returns the addresses the guard will dial, in order: the allowed
// ones of an allowed decision, none otherwise.
func (d *Decision) Dialable() []netip.Addr {
	if !d.Allow {
		return nil
	}
	out := make([]netip.Addr, 0, len(d.Addrs))
	for _, v := range d.Addrs {
		if v.Allowed {
			out = append(out, v.Addr)
		}
	}
	return out
}

// Destination is the decision as the request description carries it to
// policy and audit: the address to dial and every resolved address.
func (d *Decision) Destination() request.Destination {
	dst := request.Destination{IP: d.Addr, Port: d.Port}
	for _, v := range d.Addrs {
		dst.Addresses = append(dst.Addresses, v.Addr)
	}
	return dst
}

// DeniedError is a refusal by the guard. The caller answers 403 and audits
// it (Addr and Class name what was refused).
type DeniedError struct {
	Host   string
	Addr   netip.Addr
	Class  Class
	Reason string
}

func (e *DeniedError) Error() string {
	if !e.Addr.IsValid() {
		return fmt.Sprintf("egress: refused %s: %s", e.Host, e.Reason)
	}
	return fmt.Sprintf("egress: refused %s (%s): %s", e.Host, e.Addr, e.Reason)
}

// ResolveError is a failed lookup; Err is the resolver's error (usually a
// *net.DNSError, whose IsNotFound and IsTimeout tell a caller 502 from 504).
// Nothing was dialled.
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string { return fmt.Sprintf("egress: resolve %s: %v", e.Host, e.Err) }
func (e *ResolveError) Unwrap() error { return e.Err }

// Check resolves host (once; an address in any spelling is not looked up)
// and judges every address. It returns the Decision, filled in on refusal
// too, and a *DeniedError, a *ResolveError, or an error wrapping
// request.ErrHost for a host that can't be read.
func (g *Guard) Check(ctx context.Context, host string, port int) (Decision, error) {
	t, err := parseTarget(host)
	if err != nil {
		return Decision{Host: host, Port: port, Class: Unclassified, Reason: "invalid host"}, err
	}
	return g.check(ctx, t, port)
}

func (g *Guard) check(ctx context.Context, t hostTarget, port int) (Decision, error) {
	d := Decision{Host: t.host, Port: port, Literal: t.literal}
	addrs := []netip.Addr{t.addr}
	if !t.literal {
		var err error
		addrs, err = g.resolver.LookupNetIP(ctx, "ip", t.host)
		if err == nil && len(addrs) == 0 {
			err = &net.DNSError{Err: "no addresses", Name: t.host, IsNotFound: true}
		}
		if err != nil {
			d.Reason = "lookup failed"
			return d, &ResolveError{Host: t.host, Err: err}
		}
	}
	d.Addrs = make([]Verdict, len(addrs))
	allowed, firstAllowed, firstDenied := 0, -1, -1
	for i, a := range addrs {
		if !t.literal {
			// Go's resolver returns /etc/hosts IPv4 entries in mapped form,
			// and a mapped address reaches its IPv4 address: judge and dial
			// that. (A written literal "[::ffff:…]" stays EmbedsIPv4.)
			a = a.Unmap()
		}
		v := g.judge(a)
		d.Addrs[i] = v
		switch {
		case v.Allowed:
			allowed++
			if firstAllowed < 0 {
				firstAllowed = i
			}
		case firstDenied < 0:
			firstDenied = i
		}
	}
	switch {
	case allowed == len(addrs):
		v := d.Addrs[0]
		d.Allow, d.Addr, d.Class, d.Reason = true, v.Addr, v.Class, allowReason(v)
		return d, nil
	case allowed > 0 && g.allowMixed:
		v := d.Addrs[firstAllowed]
		d.Allow, d.Addr, d.Class = true, v.Addr, v.Class
		d.Reason = allowReason(v) + "; refused addresses of a mixed answer dropped (unsafeAllowMixed)"
		return d, nil
	}
	v := d.Addrs[firstDenied]
	d.Addr, d.Class, d.Reason = v.Addr, v.Class, denyReason(v)
	if allowed > 0 {
		d.Reason = "answer mixes allowed and refused addresses (DNS rebinding?): " + d.Reason
	}
	return d, &DeniedError{Host: d.Host, Addr: d.Addr, Class: d.Class, Reason: d.Reason}
}

// judge classifies one address and applies the lists: deny first, then the
// gateway's own addresses (admitted only by an exact allow entry), then the
// class, then the allow-list.
func (g *Guard) judge(a netip.Addr) Verdict {
	a = a.WithZone("")
	v := Verdict{Addr: a, Class: Classify(a)}
	if _, ok := g.own[a]; ok {
		v.Class = Own
	}
	switch {
	case containsAddr(g.deny, a):
		v.By = "deny-list"
	case v.Class == Own:
		if slices.Contains(g.allow, netip.PrefixFrom(a, a.BitLen())) {
			v.Allowed, v.By = true, "allow-list"
		}
	case v.Class == Public:
		v.Allowed = true
	case containsAddr(g.allow, a):
		v.Allowed, v.By = true, "allow-list"
	}
	return v
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func allowReason(v Verdict) string {
	if v.By == "allow-list" {
		return v.Class.String() + " address in the allow-list"
	}
	return "public address"
}

func denyReason(v Verdict) string {
	switch {
	case v.By == "deny-list":
		return "address in the deny-list"
	case v.Class == Own:
		return "the gateway's own address"
	case v.Class == EmbedsIPv4:
		if e, ok := EmbeddedIPv4(v.Addr); ok {
			return fmt.Sprintf("IPv6 address embedding %s (%s)", e, Classify(e))
		}
	}
	return v.Class.String() + " address"
}

type decisionKey struct{}

// WithDecision returns a context that carries d to DialContext: a proxy that
// checked the destination for policy and audit hands the checked addresses
// to its http.Transport, which then dials them without a second lookup.
func WithDecision(ctx context.Context, d Decision) context.Context {
	return context.WithValue(ctx, decisionKey{}, &d)
}

// DialContext is for http.Transport.DialContext: it checks addr's host (or
// takes the Decision of the same host and port from the context, see
// WithDecision) and dials the allowed addresses. A refusal is a
// *DeniedError, a failed lookup a *ResolveError.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("egress: dial %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("egress: dial %q: invalid port", addr)
	}
	t, err := parseTarget(host)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Value(decisionKey{}).(*Decision); ok && d.Host == t.host && d.Port == port {
		return g.Dial(ctx, network, *d)
	}
	d, err := g.check(ctx, t, port)
	if err != nil {
		return nil, err
	}
	return g.Dial(ctx, network, d)
}

// Dial connects to the allowed addresses of d, one after another (no
// racing: each attempt is bounded by the dial timeout, all by ctx), and
// returns the first connection made. Each address is judged again, so a
// Decision assembled elsewhere can't lead the guard to a refused address,
// and the socket is checked to connect to exactly that address.
func (g *Guard) Dial(ctx context.Context, network string, d Decision) (net.Conn, error) {
	if !d.Allow {
		return nil, &DeniedError{Host: d.Host, Addr: d.Addr, Class: d.Class, Reason: d.Reason}
	}
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("egress: dial %s: unsupported network %q", d.Host, network)
	}
	if d.Port <= 0 || d.Port > 65535 {
		return nil, fmt.Errorf("egress: dial %s: invalid port %d", d.Host, d.Port)
	}
	var errs []error
	for _, a := range d.Dialable() {
		if network == "tcp4" && !a.Is4() || network == "tcp6" && !a.Is6() {
			continue
		}
		if v := g.judge(a); !v.Allowed {
			return nil, &DeniedError{Host: d.Host, Addr: a, Class: v.Class, Reason: denyReason(v)}
		}
		ap := netip.AddrPortFrom(a, uint16(d.Port))
		dialer := net.Dialer{Timeout: g.dialTimeout, ControlContext: connectsTo(ap)}
		c, err := dialer.DialContext(ctx, network, ap.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("egress: dial %s: no %s address to dial", d.Host, network)
	}
	return nil, fmt.Errorf("egress: dial %s: %w", d.Host, errors.Join(errs...))
}

// connectsTo refuses a socket whose connect address is not want: the last
// word before the SYN, so no code path between check and dial (a resolver
// inside the dialer, a future refactor) can swap the address.
func connectsTo(want netip.AddrPort) func(context.Context, string, string, syscall.RawConn) error {
	return func(_ context.Context, _, address string, _ syscall.RawConn) error {
		got, err := netip.ParseAddrPort(address)
		if err != nil || got.Addr().Unmap() != want.Addr().Unmap() || got.Port() != want.Port() {
			return fmt.Errorf("egress: socket for %s would connect to %s", want, address)
		}
		return nil
	}
}
