package exchange

import (
	"errors"
	"strings"
)

// ErrTarget is a request-target the fronts don't serve.
var ErrTarget = errors.New("unsupported request target")

// PathOfTarget returns the path-and-query part of a request-target as sent:
// the origin-form itself, or what follows the authority of an absolute-form
// target. "*" (OPTIONS *) and authority-form (CONNECT) are not paths. It is
// the one reading of a target every front uses, so that none can see another
// path in the same bytes.
func PathOfTarget(target string) (string, error) {
	if strings.HasPrefix(target, "/") {
		return target, nil
	}
	// The text before "://" must be a scheme (RFC 3986 §3.1): net/http reads
	// "A:/://x/admin" as scheme "A" and path "/://x/admin", not as host x.
	i := strings.Index(target, "://")
	if i <= 0 || !isScheme(target[:i]) {
		return "", ErrTarget
	}
	rest := target[i+3:]
	j := strings.IndexAny(rest, "/?#")
	if j < 0 {
		return "/", nil
	}
	if rest[j] != '/' {
		return "/" + rest[j:], nil
	}
	return rest[j:], nil
}

// isScheme reports whether s is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}
