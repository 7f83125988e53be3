package egress

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"tollgate.dev/tollgate/internal/request"
)

// A CONNECT tunnel is opaque, but its first flight is not: the workload's
// TLS ClientHello travels in clear and names the server it wants (SNI,
// RFC 6066). PeekClientHello reads that hello without terminating TLS, so
// the tunnel can refuse a ClientHello for a name other than the one policy
// allowed (Smokescreen lets an allowed CONNECT carry a hello for any name:
// "CONNECT allowed.example:443" then SNI "evil.example" reaches a shared
// front end, e.g. a CDN, that serves evil.example).

// Errors of PeekClientHello, matched with errors.Is. Every one of them closes
// the tunnel: a hello the gateway can't read is a hello it can't judge.
var (
	// ErrNotTLS: the first bytes are not a TLS handshake record (plain HTTP,
	// SSLv2, another protocol).
	ErrNotTLS = errors.New("not a TLS handshake")
	// ErrMalformedHello: the records or the ClientHello break the TLS
	// grammar (truncated, a length that overruns, a record of another type in
	// the middle, a duplicate extension, bytes after the hello).
	ErrMalformedHello = errors.New("malformed TLS ClientHello")
	// ErrHelloTooLarge: the ClientHello needs more than the allowed number
	// of bytes.
	ErrHelloTooLarge = errors.New("TLS ClientHello too large")
	// ErrNoSNI: the ClientHello has no server_name extension.
	ErrNoSNI = errors.New("TLS ClientHello without a server name (SNI)")
	// ErrInvalidSNI: the server_name extension is not one host name in
	// letters, digits, '-' and '.' (RFC 6066 §3): several names, an empty
	// one, other bytes, an IP address, a name type other than host_name.
	ErrInvalidSNI = errors.New("invalid server name (SNI) in TLS ClientHello")
	// ErrECH: the ClientHello is encrypted (ECH): the name it shows is the
	// outer one, a front for the real name, which proves nothing.
	ErrECH = errors.New("encrypted TLS ClientHello (ECH)")
)

// DefaultMaxClientHello bounds a ClientHello with its record headers. Real
// hellos, post-quantum key shares included, are a few KiB.
const DefaultMaxClientHello = 16 << 10

// TLS wire constants (RFC 8446, RFC 6066, RFC 7301, RFC 9849).
const (
	helloRecordHeaderLen  = 5
	helloMaxRecordPayload = 1 << 14 // 2^14, RFC 8446 §5.1
	helloRecordHandshake  = 22
	helloTypeClientHello  = 1
	extServerName         = 0
	extALPN               = 16
	extECH                = 0xfe0d // encrypted_client_hello, RFC 9849
	extESNI               = 0xffce // its draft predecessor, still an encrypted name
	sniHostName           = 0
)

// ClientHelloInfo is what the gateway learns from a ClientHello in clear.
type ClientHelloInfo struct {
	// ServerName is the SNI as the client sent it (validated: letters,
	// digits, '-' and '.').
	ServerName string
	// Host is ServerName canonicalized by request.CanonicalHost, the form
	// compared with the CONNECT host.
	Host string
	// ALPN lists the application protocols offered, in the client's order.
	ALPN []string
	// ECH reports an encrypted_client_hello extension (or draft ESNI): the
	// real server name is hidden from the gateway.
	ECH bool
}

// PeekClientHello reads one TLS ClientHello from r and parses it, reading
// no byte beyond the record that ends it, so the bytes that follow stay in r
// for the tunnel. raw is every byte read (on error too): the tunnel writes it
// to the destination first, unchanged.
//
// The hello may span several records: a client (or an attacker hiding the
// name from parsers that read one record) can fragment it down to a byte per
// record. At most max bytes (records included) are read and allocated,
// whatever lengths the peer declares; max <= 0 means DefaultMaxClientHello.
func PeekClientHello(r io.Reader, max int) (hello ClientHelloInfo, raw []byte, err error) {
	if max <= 0 {
		max = DefaultMaxClientHello
	}
	raw = make([]byte, 0, min(max, 2048))
	var msg []byte // the handshake bytes, gathered when they span records
	for first := true; ; first = false {
		if len(raw)+helloRecordHeaderLen > max {
			return hello, raw, fmt.Errorf("%w: more than %d bytes", ErrHelloTooLarge, max)
		}
		if raw, err = readHello(r, raw, helloRecordHeaderLen, first); err != nil {
			return hello, raw, err
		}
		hdr := raw[len(raw)-helloRecordHeaderLen:]
		if hdr[0] != helloRecordHandshake || hdr[1] != 3 {
			if first {
				return hello, raw, ErrNotTLS
			}
			// Alerts or change_cipher_spec between the fragments of a hello
			// are not TLS; a parser that skipped them would see another
			// stream than the server does.
			return hello, raw, fmt.Errorf("%w: record of type %d inside the hello", ErrMalformedHello, hdr[0])
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > helloMaxRecordPayload {
			// Empty handshake fragments are forbidden (RFC 8446 §5.1) and
			// would let a peer loop us on headers alone.
			return hello, raw, fmt.Errorf("%w: record length %d", ErrMalformedHello, n)
		}
		if len(raw)+n > max {
			return hello, raw, fmt.Errorf("%w: more than %d bytes", ErrHelloTooLarge, max)
		}
		if raw, err = readHello(r, raw, n, false); err != nil {
			return hello, raw, err
		}
		payload := raw[len(raw)-n:]
		hs := payload
		if !first || !helloComplete(payload) {
			msg = append(msg, payload...)
			hs = msg
		}
		if len(hs) < 4 {
			continue
		}
		if hs[0] != helloTypeClientHello {
			return hello, raw, fmt.Errorf("%w: handshake message type %d, not ClientHello", ErrMalformedHello, hs[0])
		}
		total := 4 + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
		if total+helloRecordHeaderLen > max {
			return hello, raw, fmt.Errorf("%w: declares %d bytes, more than %d", ErrHelloTooLarge, total, max)
		}
		switch {
		case len(hs) < total:
			continue
		case len(hs) > total:
			// Nothing may follow the hello in its records: TLS 1.3 ends the
			// record at the key change (RFC 8446 §5.1), TLS 1.2 has nothing
			// else to send before the server answers.
			return hello, raw, fmt.Errorf("%w: %d bytes after the ClientHello", ErrMalformedHello, len(hs)-total)
		}
		hello, err = parseClientHello(hs[4:total])
		return hello, raw, err
	}
}

// readHello appends exactly n bytes from r to raw.
func readHello(r io.Reader, raw []byte, n int, first bool) ([]byte, error) {
	start := len(raw)
	raw = slices.Grow(raw, n)[:start+n]
	got, err := io.ReadFull(r, raw[start:])
	raw = raw[:start+got]
	switch {
	case err == nil:
		return raw, nil
	case errors.Is(err, io.EOF) && first:
		// Closed before sending anything: not a malformed hello.
		return raw, fmt.Errorf("reading the ClientHello: %w", io.EOF)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return raw, fmt.Errorf("%w: truncated: %w", ErrMalformedHello, io.ErrUnexpectedEOF)
	default:
		return raw, fmt.Errorf("reading the ClientHello: %w", err)
	}
}

// helloComplete reports whether a first record holds the whole handshake
// message (the common case, parsed in place without a copy).
func helloComplete(p []byte) bool {
	return len(p) >= 4 && 4+(int(p[1])<<16|int(p[2])<<8|int(p[3])) <= len(p)
}

// helloCursor reads the TLS presentation language: big-endian integers and
// length-prefixed vectors, failing (ok = false) rather than overrunning.
type helloCursor struct {
	b  []byte
	ok bool
}

func (c *helloCursor) bytes(n int) []byte {
	if !c.ok || n > len(c.b) {
		c.ok = false
		return nil
	}
	v := c.b[:n]
	c.b = c.b[n:]
	return v
}

func (c *helloCursor) u8() int {
	v := c.bytes(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (c *helloCursor) u16() int {
	v := c.bytes(2)
	if v == nil {
		return 0
	}
	return int(v[0])<<8 | int(v[1])
}

// vec8 and vec16 read a vector with a 1- or 2-byte length prefix.
func (c *helloCursor) vec8() []byte  { return c.bytes(c.u8()) }
func (c *helloCursor) vec16() []byte { return c.bytes(c.u16()) }

// parseClientHello parses a ClientHello body (RFC 8446 §4.1.2; the TLS 1.2
// form is the same up to the extensions).
func parseClientHello(body []byte) (ClientHelloInfo, error) {
	var hello ClientHelloInfo
	c := helloCursor{b: body, ok: true}
	c.bytes(2 + 32) // legacy_version, random
	if sid := c.vec8(); len(sid) > 32 {
		return hello, fmt.Errorf("%w: session id of %d bytes", ErrMalformedHello, len(sid))
	}
	if suites := c.vec16(); c.ok && (len(suites) == 0 || len(suites)%2 != 0) {
		return hello, fmt.Errorf("%w: cipher suites", ErrMalformedHello)
	}
	if comp := c.vec8(); c.ok && len(comp) == 0 {
		return hello, fmt.Errorf("%w: compression methods", ErrMalformedHello)
	}
	if !c.ok {
		return hello, fmt.Errorf("%w: truncated before the extensions", ErrMalformedHello)
	}
	if len(c.b) == 0 {
		// A TLS 1.2 hello may have no extensions at all, so no SNI.
		return hello, ErrNoSNI
	}
	exts := helloCursor{b: c.vec16(), ok: c.ok}
	if !c.ok || len(c.b) != 0 {
		return hello, fmt.Errorf("%w: extensions block", ErrMalformedHello)
	}
	// One bit per extension type: RFC 8446 §4.2 forbids duplicates, and a
	// second server_name that one parser takes and another skips is a
	// bypass. 8 KiB on the stack, no allocation.
	var seen [1 << 16 / 64]uint64
	var sni []byte
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := exts.vec16()
		if !exts.ok {
			return hello, fmt.Errorf("%w: extension overruns the block", ErrMalformedHello)
		}
		if seen[typ/64]&(1<<(typ%64)) != 0 {
			return hello, fmt.Errorf("%w: extension %d appears twice", ErrMalformedHello, typ)
		}
		seen[typ/64] |= 1 << (typ % 64)
		var err error
		switch typ {
		case extServerName:
			sni, err = parseSNI(data)
		case extALPN:
			hello.ALPN, err = parseALPN(data)
		case extECH, extESNI:
			hello.ECH = true
		}
		if err != nil {
			return hello, err
		}
	}
	if sni == nil {
		return hello, ErrNoSNI
	}
	hello.ServerName = string(sni)
	host, err := sniHost(hello.ServerName)
	if err != nil {
		hello.ServerName = ""
		return hello, err
	}
	hello.Host = host
	return hello, nil
}

// parseSNI reads a server_name extension (RFC 6066 §3): a list of exactly
// one host_name entry.
func parseSNI(data []byte) ([]byte, error) {
	c := helloCursor{b: data, ok: true}
	list := helloCursor{b: c.vec16(), ok: c.ok}
	if !c.ok || len(c.b) != 0 || len(list.b) == 0 {
		return nil, fmt.Errorf("%w: server_name extension", ErrMalformedHello)
	}
	typ := list.u8()
	name := list.vec16()
	if !list.ok {
		return nil, fmt.Errorf("%w: server_name extension", ErrMalformedHello)
	}
	// Exactly one entry of type host_name: with two, the gateway and the
	// server could each believe a different one (crypto/tls skips types it
	// does not know and takes the first host_name).
	if len(list.b) != 0 {
		return nil, fmt.Errorf("%w: more than one name", ErrInvalidSNI)
	}
	if typ != sniHostName {
		return nil, fmt.Errorf("%w: name type %d, not host_name", ErrInvalidSNI, typ)
	}
	if len(name) == 0 {
		return nil, fmt.Errorf("%w: empty name", ErrInvalidSNI)
	}
	for _, b := range name {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.') {
			// RFC 6066 names are ASCII A-labels; anything else (NUL, '%',
			// '_', UTF-8) is read differently by different servers.
			return nil, fmt.Errorf("%w: byte 0x%02x in the name", ErrInvalidSNI, b)
		}
	}
	return name, nil
}

// sniHost canonicalizes a validated SNI with the gateway's one host
// canonicalizer and refuses addresses, which RFC 6066 forbids in SNI: a
// name that reads as a number ("10.0.0.1", "127.1", "0x7f.1") is one.
func sniHost(name string) (string, error) {
	trimmed := strings.TrimSuffix(name, ".")
	last := trimmed[strings.LastIndexByte(trimmed, '.')+1:]
	if _, err := netip.ParseAddr(trimmed); err == nil || helloNumericLabel(last) {
		return "", fmt.Errorf("%w: %q is an IP address", ErrInvalidSNI, name)
	}
	host, err := request.CanonicalHost(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidSNI, err)
	}
	return host, nil
}

// helloNumericLabel reports whether a label reads as a number to inet_aton:
// decimal digits, or "0x" and hex digits.
func helloNumericLabel(l string) bool {
	if l == "" {
		return false
	}
	digits := "0123456789"
	if len(l) >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X') {
		l, digits = l[2:], "0123456789abcdefABCDEF"
	}
	for i := 0; i < len(l); i++ {
		if !strings.ContainsRune(digits, rune(l[i])) {
			return false
		}
	}
	return true
}

// parseALPN reads an application_layer_protocol_negotiation extension
// (RFC 7301 §3.1): a non-empty list of non-empty names.
func parseALPN(data []byte) ([]string, error) {
	c := helloCursor{b: data, ok: true}
	list := helloCursor{b: c.vec16(), ok: c.ok}
	if !c.ok || len(c.b) != 0 || len(list.b) == 0 {
		return nil, fmt.Errorf("%w: ALPN extension", ErrMalformedHello)
	}
	var protos []string
	for len(list.b) > 0 {
		p := list.vec8()
		if !list.ok || len(p) == 0 {
			return nil, fmt.Errorf("%w: ALPN extension", ErrMalformedHello)
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}
