package pathnorm

import (
	"errors"
	"strconv"
)

// Reasons a request-target is refused. Each is the Reason of an [*Error];
// match them with errors.Is. The ingress answers 400 to all of them
// (ErrAsteriskForm aside, which it may serve for OPTIONS).
var (
	// ErrTooLong: the target is longer than MaxLength; a cheap bound on the
	// work done for one request.
	ErrTooLong = errors.New("request-target too long")
	// ErrAsteriskForm: the target is "*" (OPTIONS *, RFC 9112 §3.2.4). It
	// has no path; the caller decides whether to serve it.
	ErrAsteriskForm = errors.New("asterisk-form request-target")
	// ErrNotAbsolutePath: the path does not start with '/', so it is not
	// origin-form and cannot be compared with policy paths.
	ErrNotAbsolutePath = errors.New("path does not start with '/'")
	// ErrControlChar: a control character or NUL, raw or percent-encoded.
	// Matchers and backends disagree on where such a string ends
	// (CVE-2019-9900).
	ErrControlChar = errors.New("control character or NUL")
	// ErrInvalidEscape: '%' not followed by two hex digits; backends differ
	// on what such a sequence means.
	ErrInvalidEscape = errors.New("invalid percent-encoding")
	// ErrInvalidChar: a raw byte that RFC 3986 does not allow there (space,
	// quote, '<', '{', '|', non-ASCII, ...).
	ErrInvalidChar = errors.New("character not allowed in request-target")
	// ErrEscapedSlash: %2F or %5C under EscapedSlashesReject
	// (CVE-2021-31920).
	ErrEscapedSlash = errors.New("escaped slash or backslash")
	// ErrPathParameter: a ';' path parameter under PathParametersReject, or
	// outside the last segment under PathParametersRejectExceptLast.
	// Servlet upstreams strip it and serve "/admin;x/users" as
	// "/admin/users", which a rule on "/admin/*" does not see.
	ErrPathParameter = errors.New("path parameter (';') in path")
	// ErrEscapedSemicolon: %3B or %3b in the path under any PathParameters
	// action but PathParametersKeep. Containers that decode before they
	// strip parameters read it as ';'.
	ErrEscapedSemicolon = errors.New("escaped semicolon in path")
	// ErrQuerySemicolon: ParseQuery found an unescaped ';', which some
	// backends treat as a separator and others do not (parameter cloaking).
	ErrQuerySemicolon = errors.New("semicolon in query")
	// ErrInvalidOptions: the Options are not usable; Normalize fails closed.
	ErrInvalidOptions = errors.New("invalid path normalization options")
)

// Error is a refused request-target. Its text names the reason and the
// position but never echoes the input, which may carry secrets or log
// injection.
type Error struct {
	// Reason is one of the Err* values above.
	Reason error
	// Part is "path", "query" or "fragment".
	Part string
	// Offset is the byte offset in the string given to Normalize or
	// ParseQuery, or -1 when the whole input is at fault.
	Offset int
}

func (e *Error) Error() string {
	s := "pathnorm: " + e.Part + ": " + e.Reason.Error()
	if e.Offset >= 0 {
		s += " at offset " + strconv.Itoa(e.Offset)
	}
	return s
}

// Unwrap returns the Reason, for errors.Is.
func (e *Error) Unwrap() error { return e.Reason }

func fail(reason error, part string, offset int) error {
	return &Error{Reason: reason, Part: part, Offset: offset}
}
