package ingress

import (
	"errors"
	"strings"
)

var errTarget = errors.New("unsupported request target")

// pathOfTarget returns the path-and-query part of a request-target as sent: the
// origin-form itself, or what follows the authority of an absolute-form target.
// "*" (OPTIONS *) and authority-form (CONNECT) are not for the ingress.
func pathOfTarget(target string) (string, error) {
	if strings.HasPrefix(target, "/") {
		return target, nil
	}
	i := strings.Index(target, "://")
	if i <= 0 {
		return "", errTarget
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
