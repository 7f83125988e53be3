package pathnorm

import (
	"fmt"
	"strconv"
)

// PathParameters is what happens to ';' path parameters (RFC 3986 §3.3,
// "/a;v=1/b"). Servlet containers (Tomcat, Jetty, Undertow) and Spring
// remove the ";..." part of each segment before they route, so a servlet
// upstream serves "/admin;x/users" as "/admin/users" while a DENY on
// "/admin/*" does not match the raw path. The zero value is invalid, so a
// forgotten setting fails closed.
//
// Every value but PathParametersKeep also refuses an escaped semicolon
// (%3B, %3b) anywhere in the path, with [ErrEscapedSemicolon]; see
// [PathParametersRejectExceptLast] for why.
type PathParameters uint8

const (
	// PathParametersKeep leaves ';' as sent: Istio's behaviour. Only a
	// parameterized dot segment ("..;x", CVE-2026-73511) is resolved, in
	// BASE and above. Unsafe in front of servlet upstreams: "/admin;x/users"
	// does not match a rule on "/admin/*".
	PathParametersKeep PathParameters = iota + 1
	// PathParametersStrip removes the ";..." part of every segment, up to
	// the next '/', before dot segments are resolved (Tomcat's order), and
	// the policy and the upstream both get the stripped path:
	// "/admin;x/users" is "/admin/users", "/shop/cart;jsessionid=A" is
	// "/shop/cart". Upstreams that read matrix parameters or ";jsessionid"
	// lose them.
	PathParametersStrip
	// PathParametersReject refuses any ';' in the path with
	// [ErrPathParameter] (the ingress answers 400).
	PathParametersReject
	// PathParametersRejectExceptLast refuses ';' in every segment but the
	// last, where it is kept as sent: "/shop/cart;jsessionid=A" passes,
	// "/admin;x/users" and "/public/..;/admin" are refused with
	// [ErrPathParameter]. A ';' counts as in the last segment only when no
	// '/', '\', %2F or %5C follows it, whatever the mode and the escaped-
	// slash action, because some upstream may read any of them as a
	// separator.
	//
	// Caveat: an exact path match on the last segment does not see through
	// the parameter. A servlet upstream serves "/admin;x" as "/admin", but
	// a DENY on exactly "/admin" does not match "/admin;x". Use a prefix
	// ("/admin*") or add the "/admin;*" form as a second value.
	//
	// An escaped %3B is refused even in the last segment: RFC 3986 makes it
	// data, and Tomcat strips parameters before decoding, but containers
	// that decode first read it as ';'. Refusing it keeps the caveat above
	// to the raw ';' form that "/admin;*" covers.
	PathParametersRejectExceptLast
)

var pathParametersNames = [...]string{
	PathParametersKeep:             "KEEP",
	PathParametersStrip:            "STRIP",
	PathParametersReject:           "REJECT",
	PathParametersRejectExceptLast: "REJECT_EXCEPT_LAST",
}

// String returns the configuration name of p.
func (p PathParameters) String() string {
	if p.valid() {
		return pathParametersNames[p]
	}
	return "PathParameters(" + strconv.Itoa(int(p)) + ")"
}

func (p PathParameters) valid() bool {
	return p >= PathParametersKeep && p <= PathParametersRejectExceptLast
}

// ParsePathParameters accepts exactly the names KEEP, STRIP, REJECT and
// REJECT_EXCEPT_LAST (case-sensitive, like ParseMode).
func ParsePathParameters(s string) (PathParameters, error) {
	for p := PathParametersKeep; p <= PathParametersRejectExceptLast; p++ {
		if pathParametersNames[p] == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown path parameters action %q (want KEEP, STRIP, REJECT or REJECT_EXCEPT_LAST)", s)
}

// stripParams removes every ";..." up to the next '/' from p, in place.
// p has been decoded already, so each '/' in it is a separator the
// upstream sees, and each ';' is a raw one (%3B is refused under STRIP).
func stripParams(p []byte) []byte {
	out := p[:0]
	param := false
	for _, c := range p {
		switch {
		case c == '/':
			param = false
		case c == ';':
			param = true
		}
		if !param {
			out = append(out, c)
		}
	}
	return out
}
