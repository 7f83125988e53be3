package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Character classes of Envoy's URI templates: "{*}" is one non-empty segment of
// pchar, "{**}" any run of pchar and '/'.
const (
	pcharClass  = `[a-zA-Z0-9\-._~%!$&'()+,;:@=]`
	oneSegment  = pcharClass + `+`
	anySegments = `[a-zA-Z0-9\-._~%!$&'()+,;:@=/]*`
)

// compileTemplate validates a templated path as Istio does (reference §8.4) and
// compiles it into an anchored regular expression over the normalized path.
func compileTemplate(v string) (*regexp.Regexp, error) {
	if !strings.HasPrefix(v, "/") {
		return nil, fmt.Errorf("invalid path template %q: must start with '/'", v)
	}
	segs := strings.Split(v[1:], "/")
	var b strings.Builder
	b.WriteString("^")
	sawDoubleStar := false
	for i, seg := range segs {
		b.WriteString("/")
		switch seg {
		case "{*}", "{**}":
			if sawDoubleStar {
				return nil, fmt.Errorf("invalid path template %q: {**} must be the last operator", v)
			}
			if seg == "{**}" {
				sawDoubleStar = true
				b.WriteString(anySegments)
			} else {
				b.WriteString(oneSegment)
			}
			continue
		}
		if err := checkLiteral(seg); err != nil {
			return nil, fmt.Errorf("invalid path template %q: segment %d %q: %w", v, i+1, seg, err)
		}
		b.WriteString(regexp.QuoteMeta(seg))
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

func checkLiteral(seg string) error {
	if strings.ContainsAny(seg, "*{}") {
		return errors.New("'*', '{' and '}' are only allowed as a whole {*} or {**} segment")
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~%!$&'()+,;=:@", c) >= 0:
		default:
			return fmt.Errorf("character %q is not allowed in a path (RFC 3986 pchar)", c)
		}
	}
	return nil
}
