package oidc

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
)

// A browser may have several logins under way at once (tabs that each met the
// login, a start the user gave up on), so each login attempt keeps its own
// state, in two cookies named by the attempt's id:
//
//   - the state cookie <secure name>-login-<id> (the session cookie's name
//     with __Host- turned into __Secure-): the sealed state, nonce, PKCE
//     verifier and return path, Path-scoped to the callback, so the browser
//     sends it there only (__Host- requires Path=/);
//   - the marker <name>-pending-<id> (Path=/, host-only; __Host- with the
//     default name): a few bytes giving the attempt's expiry and the state
//     cookie's size. Its presence proves that this host started the attempt
//     in this browser: a sibling subdomain can plant a __Secure- cookie (with
//     Domain), never a __Host- one, so the callback requires both. Path=/ also lets the start
//     of the next login, which the state cookies never reach, see the
//     attempts under way and enforce the bound.
//
// The id is derived from the state parameter (attemptIDOf), so the callback
// finds its own cookies by the state it receives and consumes only those: two
// tabs never touch each other's attempt. No cookie lists the attempts, so
// concurrent starts never lose each other's (one shared cookie would keep
// only the last writer's view).
//
// The bound: starting an attempt expires the oldest ones (by expiry) while
// more than maxPendingLogins would be under way or their state cookies would
// add more than maxPendingBytes to the callback's Cookie header. Starts that
// race (each request sent before the other's answer came back) each see the
// attempts of before and may leave one more each; every attempt still ends at
// its expiry (StateTTL).
const (
	// maxPendingLogins bounds the login attempts under way per provider and browser.
	maxPendingLogins = 8
	// maxPendingBytes bounds what the pending state cookies add to the Cookie
	// header of a callback: about 400 bytes each with a short return path,
	// about 3.1 KB with the longest (maxRedirectLen; never over maxChunkLen,
	// see beginAttempt), so 8 short ones or 2 long ones, well within the
	// gateway's header limit (64 KiB by default) with the session next to them.
	maxPendingBytes = 8 << 10
	// maxPendingScan bounds the markers one request is read for (and so the
	// cookies one start expires).
	maxPendingScan = 4 * maxPendingLogins
	// maxStateLen: a longer state parameter is none of ours (ours are 43 characters).
	maxStateLen = 512

	attemptIDLen   = 12                              // 96 bits of SHA-256
	attemptIDText  = (attemptIDLen + 2) / 3 * 4      // its base64url length: 16
	markerLen      = 6 + 2                           // expiry (Unix milliseconds), state cookie size
	markerTextLen  = (markerLen*8 + 5) / 6           // its base64url length: 11
	attemptIDLabel = "tollgate-login-attempt-v1\x00" // domain separation of the hash
)

// attemptID names one login attempt's cookies.
type attemptID [attemptIDLen]byte

// attemptIDOf derives the attempt's id from its state parameter. A missing or
// overlong state has none.
func attemptIDOf(state string) (id attemptID, ok bool) {
	if state == "" || len(state) > maxStateLen {
		return id, false
	}
	var buf [len(attemptIDLabel) + maxStateLen]byte
	sum := sha256.Sum256(append(append(buf[:0], attemptIDLabel...), state...))
	copy(id[:], sum[:])
	return id, true
}

func (id attemptID) String() string { return sealEncoding.EncodeToString(id[:]) }

// pendingLogin is one attempt as its marker tells it.
type pendingLogin struct {
	id attemptID
	// expires is the attempt's end in Unix milliseconds (which orders the
	// attempts of one browser); 0 when the marker's value is unreadable (such
	// an attempt counts as expired).
	expires int64
	// size is what the attempt's state cookie adds to the callback's Cookie header.
	size int
}

// maxMarkerExpiry is the largest expiry a marker holds (48 bits of milliseconds).
const maxMarkerExpiry = 1<<48 - 1

// markerValue encodes the marker's value: base64url of the expiry in Unix
// milliseconds (48 bits) and the state cookie's size (16 bits).
func markerValue(expires time.Time, size int) string {
	e := expires.UnixMilli()
	if expires.Nanosecond()%int(time.Millisecond) > 0 {
		e++ // the marker lasts at least as long as the attempt
	}
	var b [markerLen]byte
	binary.BigEndian.PutUint64(b[:], uint64(min(max(e, 1), maxMarkerExpiry))<<16|uint64(min(max(size, 0), math.MaxUint16)))
	return sealEncoding.EncodeToString(b[:])
}

// parseMarkerValue reverses markerValue; anything else is not a marker's value.
func parseMarkerValue(v string) (expires int64, size int, ok bool) {
	if len(v) != markerTextLen {
		return 0, 0, false
	}
	var b [markerLen]byte
	if n, err := sealEncoding.Decode(b[:], []byte(v)); err != nil || n != markerLen {
		return 0, 0, false
	}
	x := binary.BigEndian.Uint64(b[:])
	if x>>16 == 0 {
		return 0, 0, false
	}
	return int64(x >> 16), int(x & math.MaxUint16), true
}

// parseAttemptName reads the attempt id from a cookie name prefix+id.
func parseAttemptName(name, prefix string) (id attemptID, ok bool) {
	text, ok := strings.CutPrefix(name, prefix)
	if !ok || len(text) != attemptIDText {
		return id, false
	}
	if n, err := sealEncoding.Decode(id[:], []byte(text)); err != nil || n != attemptIDLen {
		return id, false
	}
	return id, true
}

// securePrefixed is the name a Path-scoped cookie of the session cookie's
// family takes: browsers refuse a __Host- cookie whose Path is not /, and
// __Secure- keeps the Secure requirement (prefixes are case-insensitive).
func securePrefixed(name string) string {
	const host = "__Host-"
	if len(name) >= len(host) && strings.EqualFold(name[:len(host)], host) {
		return "__Secure-" + name[len(host):]
	}
	return name
}

func (l *Login) stateCookieName(id attemptID) string  { return l.statePrefix + id.String() }
func (l *Login) markerCookieName(id attemptID) string { return l.pendingPrefix + id.String() }

// stateCookie is a session-like cookie scoped to the callback path.
func (l *Login) stateCookie(name, value string, expires time.Time) *http.Cookie {
	c := sessionCookie(name, value, expires)
	c.Path = l.endpoint("callback")
	return c
}

// expireAttempt expires both cookies of one attempt.
func (l *Login) expireAttempt(w http.ResponseWriter, id attemptID) {
	c := expiredCookie(l.stateCookieName(id))
	c.Path = l.endpoint("callback")
	http.SetCookie(w, c)
	http.SetCookie(w, expiredCookie(l.markerCookieName(id)))
}

// pendingLogins reads the markers of the attempts under way from the request's
// Cookie headers: at most maxPendingScan, one per id, in the order sent. A
// name with the marker prefix but no id is not ours and is skipped; a marker
// whose value is unreadable is kept with expires 0, so it is cleaned up.
func (l *Login) pendingLogins(r *http.Request) []pendingLogin {
	var out []pendingLogin
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			id, ok := parseAttemptName(k, l.pendingPrefix)
			if !ok || slices.ContainsFunc(out, func(p pendingLogin) bool { return p.id == id }) {
				continue
			}
			p := pendingLogin{id: id}
			if e, size, ok := parseMarkerValue(v); ok {
				p.expires, p.size = e, size
			}
			if out = append(out, p); len(out) == maxPendingScan {
				return out
			}
		}
	}
	return out
}

// admitAttempt returns the attempts under way to end so that add fits the
// bound: the expired ones, then the oldest (earliest expiry) while more than
// maxPendingLogins would be under way or their state cookies would exceed
// maxPendingBytes. add itself is always admitted.
func admitAttempt(have []pendingLogin, add pendingLogin, now int64) (evict []pendingLogin) {
	live := make([]pendingLogin, 0, len(have))
	for _, p := range have {
		switch {
		case p.id == add.id:
		case p.expires <= now:
			evict = append(evict, p)
		default:
			live = append(live, p)
		}
	}
	slices.SortStableFunc(live, func(a, b pendingLogin) int { return cmp.Compare(a.expires, b.expires) })
	total := add.size
	for _, p := range live {
		total += p.size
	}
	for len(live) > 0 && (len(live)+1 > maxPendingLogins || total > maxPendingBytes) {
		evict, total, live = append(evict, live[0]), total-live[0].size, live[1:]
	}
	return evict
}

// findAttempt tells what the callback's request holds of the attempt id:
// its state cookie, whether its marker is there, and whether markers of
// other attempts are.
func (l *Login) findAttempt(r *http.Request, id attemptID) (state *http.Cookie, marker, others bool) {
	state, _ = r.Cookie(l.stateCookieName(id))
	name := l.markerCookieName(id)
	for _, c := range r.Cookies() {
		if c.Name == name {
			marker = true
		} else if strings.HasPrefix(c.Name, l.pendingPrefix) {
			others = true
		}
	}
	return state, marker, others
}

// attemptError explains a callback whose attempt this browser does not hold.
func attemptError(state *http.Cookie, marker, others bool) error {
	switch {
	case state == nil && !marker && others:
		return fmt.Errorf("%w: no login under way in this browser has this state (another browser's, or ended by newer logins)", ErrStateMismatch)
	case state == nil && !marker:
		return ErrStateMissing
	case state == nil:
		return fmt.Errorf("%w: the state cookie is gone (expired or ended by newer logins)", ErrStateMissing)
	default:
		return fmt.Errorf("%w: no pending-login marker (a state cookie this host did not set in this browser)", ErrStateMissing)
	}
}
