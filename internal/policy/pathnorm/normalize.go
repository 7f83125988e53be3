package pathnorm

import "strings"

// MaxLength is the longest request-target Normalize accepts, in bytes.
// Longer targets are refused with ErrTooLong: no real path needs more, and
// the bound keeps the work per request small.
const MaxLength = 8 << 10

// Result is a normalized request-target.
type Result struct {
	// Path is the normalized path: it starts with '/' and carries no query
	// and no fragment. The policy matches it and the upstream receives it.
	Path string
	// RawQuery is the query as sent, without the '?', after validation. It
	// is empty when there was no query (or an empty one).
	RawQuery string
}

// RequestURI is the origin-form target to forward upstream: Path, and
// "?"+RawQuery when there is a query.
func (r Result) RequestURI() string {
	if r.RawQuery == "" {
		return r.Path
	}
	return r.Path + "?" + r.RawQuery
}

// Normalize validates and normalizes rawTarget, the request-target as the
// client sent it: origin-form ("/a/b?x=1"), or the path-and-query part of
// an absolute-form target that the caller has split off (an empty path
// there means "/", RFC 9112 §3.2.2).
//
// The returned error is an [*Error]; errors.Is matches its Reason against
// the Err* values. The target "*" yields ErrAsteriskForm.
//
// When the path needs no change, Result.Path is a substring of rawTarget
// and Normalize does not allocate.
func Normalize(rawTarget string, opts Options) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	if len(rawTarget) > MaxLength {
		return Result{}, fail(ErrTooLong, "path", -1)
	}
	if rawTarget == "*" {
		return Result{}, fail(ErrAsteriskForm, "path", -1)
	}

	target := rawTarget
	// The fragment is never sent to the upstream and never matched
	// (CVE-2021-39156: "/user/profile#x" against DENY "/user/profile"),
	// so it is cut before anything looks at the path, in every mode.
	if i := strings.IndexByte(target, '#'); i >= 0 {
		for j := i + 1; j < len(target); j++ {
			if isControl(target[j]) {
				return Result{}, fail(ErrControlChar, "fragment", j)
			}
		}
		target = target[:i]
	}
	path, query := target, ""
	if i := strings.IndexByte(target, '?'); i >= 0 {
		path, query = target[:i], target[i+1:]
		if err := validateQuery(query, i+1); err != nil {
			return Result{}, err
		}
	}
	if path == "" {
		return Result{Path: "/", RawQuery: query}, nil
	}
	if path[0] != '/' {
		return Result{}, fail(ErrNotAbsolutePath, "path", 0)
	}

	work, err := scanPath(path, opts)
	if err != nil {
		return Result{}, err
	}
	if work {
		path = rewrite(path, opts)
	}
	return Result{Path: path, RawQuery: query}, nil
}

// scanPath validates the raw path p and reports whether normalizing would
// change it. Validation covers the whole path, so rewrite need not check.
func scanPath(p string, opts Options) (work bool, err error) {
	base := opts.Mode >= ModeBase
	merge := opts.Mode >= ModeMergeSlashes
	action := opts.slashAction()
	params := opts.PathParameters
	// param is the offset of a ';' under PathParametersRejectExceptLast
	// that is not yet known to be in the last segment; any separator after
	// it refuses the path.
	param := -1
	for i := 0; i < len(p); i++ {
		switch pathClass[p[i]] {
		case classPchar, classDot:
		case classSemicolon:
			switch params {
			case PathParametersStrip:
				work = true
			case PathParametersReject:
				// Servlet upstreams strip ";x": "/admin;x/users" would
				// reach /admin/users past a DENY on "/admin/*".
				return false, fail(ErrPathParameter, "path", i)
			case PathParametersRejectExceptLast:
				if param < 0 {
					param = i
				}
			}
		case classSlash:
			if param >= 0 {
				return false, fail(ErrPathParameter, "path", param)
			}
			if !base || i+1 == len(p) {
				break
			}
			switch p[i+1] {
			case '/':
				work = work || merge
			case '.':
				work = work || dotSegment(segmentAt(p, i+1)) != 0
			}
		case classPercent:
			v, ok := escapeAt(p, i)
			switch {
			case !ok:
				return false, fail(ErrInvalidEscape, "path", i)
			case isControl(v):
				// %00 ends strings in C backends; the policy would judge
				// more than the backend reads (CVE-2019-9900's lesson).
				return false, fail(ErrControlChar, "path", i)
			case v == '/' || v == '\\':
				switch action {
				case EscapedSlashesReject:
					// The backend may decode it and route on a path the
					// policy never saw (CVE-2021-31920: "/admin%2Fx").
					return false, fail(ErrEscapedSlash, "path", i)
				case EscapedSlashesDecode:
					work = true
				}
				// Kept or decoded, some upstream reads it as a separator,
				// so a ';' before it is not in the last segment.
				if param >= 0 {
					return false, fail(ErrPathParameter, "path", param)
				}
			case v == ';' && params != PathParametersKeep:
				// RFC 3986 makes %3B data, and Tomcat strips parameters
				// before decoding, but containers that decode first read
				// it as ';'. Stripping at it would change the resource an
				// RFC upstream serves; keeping it would let a decoding
				// container strip what the policy judged ("/admin%3Bx/users"
				// served as /admin/users). Refuse it, in the last segment
				// too, where a "/x;*" rule would not cover it.
				return false, fail(ErrEscapedSemicolon, "path", i)
			case base && isUnreserved(v):
				work = true
			}
			i += 2
		case classBackslash:
			// '\' is '/' in BASE and above, and to Windows and some Java
			// servers in NONE too.
			if param >= 0 {
				return false, fail(ErrPathParameter, "path", param)
			}
			work = work || base
		case classControl:
			return false, fail(ErrControlChar, "path", i)
		default:
			// Bytes outside RFC 3986 are read differently by different
			// servers (raw UTF-8, spaces, '{'); refuse instead of guessing.
			return false, fail(ErrInvalidChar, "path", i)
		}
	}
	return work, nil
}

// rewrite normalizes a path that scanPath accepted and found work in.
func rewrite(p string, opts Options) string {
	base := opts.Mode >= ModeBase
	decodeSlashes := opts.slashAction() == EscapedSlashesDecode
	buf := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '%':
			v, _ := escapeAt(p, i)
			switch {
			case decodeSlashes && v == '/':
				buf = append(buf, '/')
			case decodeSlashes && v == '\\':
				buf = append(buf, backslash(base))
			case base && isUnreserved(v):
				// Decoded once: "%252e" yields "%252e", never ".".
				buf = append(buf, v)
			default:
				// Kept verbatim, hex case included, as Envoy does.
				buf = append(buf, p[i:i+3]...)
			}
			i += 2
		case '\\':
			buf = append(buf, backslash(base))
		default:
			buf = append(buf, c)
		}
	}
	if opts.PathParameters == PathParametersStrip {
		// Before dot segments, as Tomcat does: "/a/..;x/b" is "/a/../b".
		buf = stripParams(buf)
	}
	if base {
		buf = removeDotSegments(buf)
	}
	if opts.Mode >= ModeMergeSlashes {
		buf = mergeSlashes(buf)
	}
	return string(buf)
}

// backslash is what '\' becomes: '/' in BASE and above, because Windows
// and some Java servers read it as a separator.
func backslash(base bool) byte {
	if base {
		return '/'
	}
	return '\\'
}
