package oidc

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"net/http"
)

const tokensFormat = 1

// sessionTokens is the second part of the session: the provider's tokens, sealed
// in the cookie <name>-tokens (chunked like the first), opened only to refresh
// the access token and to send the logout hint. The tokens share the opened
// cookie's buffer (never modified after opening).
type sessionTokens struct {
	ID           [sessionIDLen]byte // the session's ID; must equal the per-request part's
	IDToken      []byte             // kept for the logout hint
	AccessToken  []byte
	RefreshToken []byte
}

func (t *sessionTokens) marshal() []byte {
	b := make([]byte, 0, 1+sessionIDLen+3*binary.MaxVarintLen32+len(t.IDToken)+len(t.AccessToken)+len(t.RefreshToken))
	b = append(b, tokensFormat)
	b = append(b, t.ID[:]...)
	for _, f := range [][]byte{t.IDToken, t.AccessToken, t.RefreshToken} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// parseTokens decodes marshal's output, as strictly as parseSession.
func parseTokens(b []byte) (*sessionTokens, error) {
	if len(b) < 1+sessionIDLen || b[0] != tokensFormat {
		return nil, errSessionFormat
	}
	t := &sessionTokens{}
	copy(t.ID[:], b[1:])
	b = b[1+sessionIDLen:]
	for _, f := range []*[]byte{&t.IDToken, &t.AccessToken, &t.RefreshToken} {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, errSessionFormat
		}
		*f = b[n : n+int(l) : n+int(l)]
		b = b[n+int(l):]
	}
	if len(b) != 0 {
		return nil, errSessionFormat
	}
	return t, nil
}

// pairs reports whether these chunks are the tokens part sealed together with s,
// judged without decrypting them: the seal s names (key id and random nonce, in
// the clear at the start) and its whole length. A tokens part of another seal
// (another session, or this one before a refresh) or a truncated one is refused
// on every request; one altered inside is refused when it is opened.
func (c *chunks) pairs(s *session) bool {
	if c.err != nil || c.n == 0 {
		return false
	}
	total := 0
	for _, p := range c.parts() {
		total += len(p)
	}
	id, ok := sealIDOf(c.part[0])
	return ok && id == s.Tokens && total == s.TokensLen
}

// openTokens opens the tokens part sent with s (c.tokens, as readSession found
// it) and checks that it belongs to s. Every failure wraps ErrSessionTokens.
func (l *Login) openTokens(r *http.Request, s *session, c *sessionCookies) (*sessionTokens, error) {
	if !c.tokens.pairs(s) {
		return nil, ErrSessionTokens
	}
	var aadBuf [192]byte
	pt, err := l.keys.Load().openChunks(cookieAAD(aadBuf[:0], l.tokensName, r.Host), c.tokens.parts())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSessionTokens, err)
	}
	t, err := parseTokens(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSessionTokens, err)
	}
	// Both parts carry the session ID, sealed: the second check that the pair
	// was written together, independent of the nonce.
	if subtle.ConstantTimeCompare(t.ID[:], s.ID[:]) != 1 {
		return nil, ErrSessionTokens
	}
	return t, nil
}
