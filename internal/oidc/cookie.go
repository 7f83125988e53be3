package oidc

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// maxChunkLen keeps each Set-Cookie under the 4096-byte per-cookie limit that
	// browsers enforce on name + value + attributes.
	maxChunkLen = 3800
	// maxChunks bounds what one session may occupy (and what a request may make us
	// concatenate): 10 × 3800 bytes.
	maxChunks = 10
)

var errTooManyChunks = errors.New("session cookie too large")

// cookieAAD binds a sealed value to the cookie name and the host it was set for,
// so a value cannot be replayed under another cookie (a login-state cookie as a
// session) or carried from one host of the gateway to another.
func cookieAAD(dst []byte, name, host string) []byte {
	dst = append(dst, "tollgate-cookie-v1\x00"...)
	dst = append(dst, name...)
	dst = append(dst, 0)
	return append(dst, cookieHost(host)...)
}

// cookieHost is the host part a browser scopes a host-only cookie to: no port, lower case.
// It avoids net.SplitHostPort, whose error for a port-less host allocates on every request.
func cookieHost(hostport string) string {
	h := hostport
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	return strings.ToLower(h)
}

// chunkName is the name of chunk i of a chunked cookie.
func chunkName(name string, i int) string {
	return name + "_" + strconv.Itoa(i)
}

// chunks are the parts of one chunked cookie (name_0, name_1, …) as the request
// sent them, not yet joined: the opener decodes them in place, so the request
// path never builds the joined value.
type chunks struct {
	name string
	part [maxChunks]string
	// n is the number of chunks present (also what a later write must expire).
	n int
	// err: a gap, a duplicate chunk or more than maxChunks makes the whole cookie invalid.
	err error
}

// parts are the chunks in order; valid only when err is nil.
func (c *chunks) parts() []string { return c.part[:c.n] }

// readChunkSets fills each set from the request's cookies in one pass over the
// Cookie headers (the session's parts share a header of several kilobytes).
func readChunkSets(r *http.Request, sets ...*chunks) {
	var seen [2][maxChunks]bool
	if len(sets) > len(seen) {
		panic("oidc: readChunkSets: too many sets")
	}
	for _, c := range sets {
		c.part, c.n, c.err = [maxChunks]string{}, 0, nil
	}
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				continue
			}
			for si, c := range sets {
				if c.err != nil || len(k) <= len(c.name)+1 || k[len(c.name)] != '_' || k[:len(c.name)] != c.name {
					continue
				}
				idx := k[len(c.name)+1:]
				i, convErr := strconv.Atoi(idx)
				if convErr != nil || i < 0 || idx != strconv.Itoa(i) {
					continue // another cookie that only shares the prefix
				}
				if i >= maxChunks {
					c.n, c.err = maxChunks, errTooManyChunks
					continue
				}
				if seen[si][i] {
					// Two cookies with one name: someone planted a second one.
					c.n, c.err = maxChunks, ErrSealInvalid
					continue
				}
				seen[si][i], c.part[i] = true, v
				c.n = max(c.n, i+1)
			}
		}
	}
	for si, c := range sets {
		if c.err != nil {
			continue
		}
		for i := range c.n {
			if !seen[si][i] {
				c.err = ErrSealInvalid
				break
			}
		}
	}
}

// readChunks joins the chunks name_0, name_1, … from the request's cookies.
func readChunks(r *http.Request, name string) (value string, n int, err error) {
	c := chunks{name: name}
	readChunkSets(r, &c)
	if c.err != nil {
		return "", c.n, c.err
	}
	return strings.Join(c.parts(), ""), c.n, nil
}

// writeChunks sets value as name_0..name_k and expires stale chunks up to had.
func writeChunks(w http.ResponseWriter, name, value string, expires time.Time, had int) error {
	k := chunkCount(value)
	if k > maxChunks {
		return errTooManyChunks
	}
	for i := range k {
		end := min((i+1)*maxChunkLen, len(value))
		http.SetCookie(w, sessionCookie(chunkName(name, i), value[i*maxChunkLen:end], expires))
	}
	for i := k; i < had; i++ {
		http.SetCookie(w, expiredCookie(chunkName(name, i)))
	}
	return nil
}

// chunkCount is the number of chunks writeChunks cuts value into.
func chunkCount(value string) int { return (len(value) + maxChunkLen - 1) / maxChunkLen }

// clearChunks expires name_0..name_{had-1}.
func clearChunks(w http.ResponseWriter, name string, had int) {
	for i := range had {
		http.SetCookie(w, expiredCookie(chunkName(name, i)))
	}
}

// sessionCookie is host-only (no Domain: a sibling subdomain can neither read nor
// set it), Secure, HttpOnly (no script access after an XSS) and SameSite=Lax (not
// sent on cross-site subresource requests and POSTs, but sent on the top-level
// navigation that returns from the provider).
func sessionCookie(name, value string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Expires:  expires,
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

func expiredCookie(name string) *http.Cookie {
	c := sessionCookie(name, "", time.Unix(0, 0))
	c.MaxAge = -1
	return c
}
