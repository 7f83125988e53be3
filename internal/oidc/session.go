package oidc

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"tollgate.dev/tollgate/internal/request"
)

// ErrSessionExpired: the session outlived its absolute lifetime.
var ErrSessionExpired = errors.New("session expired")

// ErrSessionTokens: the session's tokens part is missing, invalid, or belongs to
// another session (or to an earlier seal of this one). The session ends: a part
// that can't be paired is never replaced by a guess.
var ErrSessionTokens = errors.New("session tokens part missing or not this session's")

// sessionFormat 2 split the session into two sealed cookies; a format-1 cookie
// fails to parse, counts as no session, and the user logs in again.
const sessionFormat = 2

// sessionIDLen: 128 random bits name a session.
const sessionIDLen = 16

// session is the per-request part of the session cookie: what Authenticate needs
// on every request (the claims that become request.Auth, the expiries) and the
// binding to the tokens part. The tokens themselves (sessionTokens) live in a
// second sealed cookie that is opened only to refresh and to log out: decoding
// and decrypting kilobytes of tokens on every request is most of the cost of a
// session, and the request path needs none of them.
//
// It is encoded in a small binary form rather than JSON, which would cost more to
// scan than decrypting it.
type session struct {
	// ID is random, made at login and kept across refreshes; the tokens part
	// carries it too, so a tokens part of another session never pairs with this one.
	ID [sessionIDLen]byte
	// Tokens names the sealed tokens part written together with this one (its key
	// id and random nonce): a tokens part of an earlier seal of the same session
	// (before a refresh) does not pair either.
	Tokens sealID
	// TokensLen is the length of the tokens part's sealed text: with Tokens, the
	// request path can tell that the whole tokens part came along, unopened.
	TokensLen    int
	Created      time.Time // login time
	Expires      time.Time // absolute end of the session
	AccessExpiry time.Time // zero: unknown, never refreshed
	// Refreshable: the tokens part holds a refresh token. Without one there is
	// nothing to open the tokens part for on the request path.
	Refreshable bool
	// Claims are the verified ID-token claims, a JSON object. They share the
	// opened cookie's buffer (never modified after opening).
	Claims []byte
}

func newSessionID() [sessionIDLen]byte {
	var id [sessionIDLen]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on supported platforms
	return id
}

func (s *session) marshal() []byte {
	b := make([]byte, 0, 2+sessionIDLen+len(sealID{})+3*binary.MaxVarintLen64+binary.MaxVarintLen32+len(s.Claims))
	b = append(b, sessionFormat)
	b = append(b, s.ID[:]...)
	b = append(b, s.Tokens[:]...)
	var flags byte
	if s.Refreshable {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(s.TokensLen))
	b = binary.AppendUvarint(b, unixOrZero(s.Created))
	b = binary.AppendUvarint(b, unixOrZero(s.Expires))
	b = binary.AppendUvarint(b, unixOrZero(s.AccessExpiry))
	b = binary.AppendUvarint(b, uint64(len(s.Claims)))
	return append(b, s.Claims...)
}

var errSessionFormat = errors.New("session: bad encoding")

// parseSession decodes marshal's output. The input was authenticated by AES-GCM, so
// errors here mean a bug or a format change, but the decoder is strict anyway.
func parseSession(b []byte) (*session, error) {
	const fixed = 1 + sessionIDLen + len(sealID{}) + 1
	if len(b) < fixed || b[0] != sessionFormat || b[fixed-1]&^1 != 0 {
		return nil, errSessionFormat
	}
	s := &session{Refreshable: b[fixed-1]&1 != 0}
	copy(s.ID[:], b[1:])
	copy(s.Tokens[:], b[1+sessionIDLen:])
	b = b[fixed:]
	tl, n := binary.Uvarint(b)
	if n <= 0 || tl > maxChunks*maxChunkLen {
		return nil, errSessionFormat
	}
	s.TokensLen, b = int(tl), b[n:]
	for _, t := range []*time.Time{&s.Created, &s.Expires, &s.AccessExpiry} {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 1<<40 {
			return nil, errSessionFormat
		}
		if v != 0 {
			*t = time.Unix(int64(v), 0)
		}
		b = b[n:]
	}
	l, n := binary.Uvarint(b)
	if n <= 0 || l != uint64(len(b)-n) {
		return nil, errSessionFormat
	}
	s.Claims = b[n:len(b):len(b)]
	return s, nil
}

func unixOrZero(t time.Time) uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}

// auth turns the session's ID-token claims into the request identity that policy
// reads as request.auth.*, exactly as a verified bearer JWT would.
func (s *session) auth() (*request.Auth, error) {
	var claims map[string]any
	if err := json.Unmarshal(s.Claims, &claims); err != nil {
		return nil, fmt.Errorf("session claims: %w", err)
	}
	a := &request.Auth{Claims: claims}
	a.Issuer, _ = claims["iss"].(string)
	a.Subject, _ = claims["sub"].(string)
	a.Presenter, _ = claims["azp"].(string)
	switch aud := claims["aud"].(type) {
	case string:
		a.Audiences = []string{aud}
	case []any:
		for _, v := range aud {
			if s, ok := v.(string); ok {
				a.Audiences = append(a.Audiences, s)
			}
		}
	}
	if a.Issuer == "" || a.Subject == "" {
		return nil, errors.New("session claims: missing iss or sub")
	}
	a.SetPrincipal()
	return a, nil
}

// sessionCookies are the chunks of both parts of the session as one request sent them.
type sessionCookies struct {
	main, tokens chunks
}

// read collects both parts' chunks in one pass over the Cookie headers.
func (c *sessionCookies) read(l *Login, r *http.Request) {
	c.main.name, c.tokens.name = l.cookieName, l.tokensName
	readChunkSets(r, &c.main, &c.tokens)
}

// clear expires every chunk of both parts that the request sent (at least the
// first of each when always is set, as logout does).
func (c *sessionCookies) clear(w http.ResponseWriter, always bool) {
	m, t := c.main.n, c.tokens.n
	if always {
		m, t = max(m, 1), max(t, 1)
	}
	clearChunks(w, c.main.name, m)
	clearChunks(w, c.tokens.name, t)
}

// readSession opens the per-request part of the session into s and checks that
// the tokens part sent with it is its own, without decrypting that. c receives
// both parts' chunks (so a bad session can be cleared, and the tokens part opened
// later). No session cookie at all is (nil, nil).
//
// Fail closed: a session whose tokens part is missing, or is another seal's, is
// no session (ErrSessionTokens), though the request path could do without the
// tokens: such a session could neither be refreshed nor logged out at the
// provider, and a cookie pair that doesn't match was not written by the gateway.
func (l *Login) readSession(r *http.Request, c *sessionCookies) (*session, error) {
	c.read(l, r)
	if c.main.err != nil {
		return nil, c.main.err
	}
	if c.main.n == 0 {
		if c.tokens.n != 0 {
			return nil, ErrSessionTokens // a tokens part alone: cleared by the caller
		}
		return nil, nil
	}
	var aadBuf [192]byte
	pt, err := l.keys.Load().openChunks(cookieAAD(aadBuf[:0], l.cookieName, r.Host), c.main.parts())
	if err != nil {
		return nil, err
	}
	s, err := parseSession(pt)
	if err != nil {
		return nil, err
	}
	if !l.now().Before(s.Expires) {
		return nil, ErrSessionExpired
	}
	if !c.tokens.pairs(s) {
		return nil, ErrSessionTokens
	}
	return s, nil
}

// writeSession seals the session in its two parts for this request's host, the
// tokens part first (the per-request part names it), and expires any chunks of
// either beyond the new ones. s is not modified: a refreshed session is shared by
// concurrent requests.
func (l *Login) writeSession(w http.ResponseWriter, r *http.Request, s *session, t *sessionTokens, had *sessionCookies) error {
	keys := l.keys.Load()
	var aadBuf [192]byte
	tt := *t
	tt.ID = s.ID
	tv, err := keys.seal(cookieAAD(aadBuf[:0], l.tokensName, r.Host), tt.marshal())
	if err != nil {
		return err
	}
	ss := *s
	ss.Refreshable = len(t.RefreshToken) > 0
	var ok bool
	if ss.Tokens, ok = sealIDOf(tv); !ok {
		return errors.New("session: sealed tokens part unreadable")
	}
	ss.TokensLen = len(tv)
	sv, err := keys.seal(cookieAAD(aadBuf[:0], l.cookieName, r.Host), ss.marshal())
	if err != nil {
		return err
	}
	var hadMain, hadTokens int
	if had != nil {
		hadMain, hadTokens = had.main.n, had.tokens.n
	}
	// Both parts or neither: a per-request part written alone would be refused anyway.
	if chunkCount(sv) > maxChunks || chunkCount(tv) > maxChunks {
		return errTooManyChunks
	}
	if err := writeChunks(w, l.cookieName, sv, s.Expires, hadMain); err != nil {
		return err
	}
	return writeChunks(w, l.tokensName, tv, s.Expires, hadTokens)
}
