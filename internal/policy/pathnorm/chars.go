package pathnorm

// Byte classes of a raw path. The zero class rejects, so every byte not
// listed below (space, '"', '<', '>', '[', ']', '{', '}', '|', '^', '`',
// bytes >= 0x80) is refused.
const (
	classInvalid   = iota // not allowed raw in a path
	classControl          // 0x00-0x1F, 0x7F
	classPchar            // allowed as-is: unreserved (except '.'), sub-delims (except ';'), ':', '@'
	classDot              // '.', may start a dot segment
	classSlash            // '/'
	classPercent          // '%', starts an escape
	classBackslash        // '\', read as '/' in BASE and above
	classSemicolon        // ';', starts a path parameter
)

var pathClass = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = classControl
	}
	t[0x7F] = classControl
	for c := 0; c < 256; c++ {
		if isUnreserved(byte(c)) {
			t[c] = classPchar
		}
	}
	for _, c := range []byte("!$&'()*+,;=:@") {
		t[c] = classPchar
	}
	t['.'] = classDot
	t['/'] = classSlash
	t['%'] = classPercent
	t['\\'] = classBackslash
	t[';'] = classSemicolon
	return t
}()

// queryInvalid marks raw bytes refused in a query: control characters,
// space and bytes >= 0x80 (none of which a conforming client sends raw).
// Browsers do send '[', ']', '{', '}', '|', '^', '`', '"', '<', '>' and '\'
// unencoded in queries, so they are accepted there; the query is forwarded
// as sent, so the upstream reads what ParseQuery read.
var queryInvalid = func() (t [256]bool) {
	for c := 0; c <= 0x20; c++ {
		t[c] = true
	}
	for c := 0x7F; c < 256; c++ {
		t[c] = true
	}
	return t
}()

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isControl(c byte) bool { return c < 0x20 || c == 0x7F }

// unhex returns the value of a hex digit and whether c is one.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// escapeAt decodes the escape s[i:i+3], where s[i] == '%'.
func escapeAt(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	hi, ok1 := unhex(s[i+1])
	lo, ok2 := unhex(s[i+2])
	return hi<<4 | lo, ok1 && ok2
}
