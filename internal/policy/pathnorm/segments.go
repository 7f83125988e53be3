package pathnorm

import "bytes"

// segmentAt returns the path segment starting at p[i].
func segmentAt(p string, i int) string {
	for j := i; j < len(p); j++ {
		if p[j] == '/' {
			return p[i:j]
		}
	}
	return p[i:]
}

// dotSegment reports whether seg is "." (1), ".." (2) or neither (0).
//
// A segment whose part before a ';' path parameter (or an escaped %3B) is
// a dot segment counts as that dot segment: Tomcat and other servlet
// containers strip ";..." before resolving dots, so "/public/..;/admin"
// reaches /admin there (CVE-2026-73511). Treating it as ".." here makes the
// policy judge, and the upstream receive, "/admin".
func dotSegment[S ~string | ~[]byte](seg S) int {
	n := len(seg)
	for i := 0; i < len(seg); i++ {
		if seg[i] == ';' ||
			seg[i] == '%' && i+2 < len(seg) && seg[i+1] == '3' && (seg[i+2] == 'B' || seg[i+2] == 'b') {
			n = i
			break
		}
	}
	switch {
	case n == 1 && seg[0] == '.':
		return 1
	case n == 2 && seg[0] == '.' && seg[1] == '.':
		return 2
	}
	return 0
}

// removeDotSegments applies RFC 3986 §5.2.4 to p, which starts with '/',
// in place: the write position never passes the read position. A ".."
// removes the previous segment even when it is empty, so "/a//../b" is
// "/a/b" (as in Envoy).
func removeDotSegments(p []byte) []byte {
	out := p[:0]
	for i := 0; i < len(p); {
		// p[i] == '/'
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i+1 : j]
		last := j == len(p)
		switch dotSegment(seg) {
		case 1:
			if last {
				out = append(out, '/')
			}
		case 2:
			if k := bytes.LastIndexByte(out, '/'); k >= 0 {
				out = out[:k]
			}
			if last {
				out = append(out, '/')
			}
		default:
			out = append(out, '/')
			out = append(out, seg...)
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return out
}

// mergeSlashes collapses runs of '/' in place.
func mergeSlashes(p []byte) []byte {
	out := p[:0]
	var prev byte
	for _, c := range p {
		if c == '/' && prev == '/' {
			continue
		}
		out = append(out, c)
		prev = c
	}
	return out
}
