package oidc

import (
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

const sessionFormat = 1

// session is what the sealed session cookie holds. It is encoded in a small binary
// form rather than JSON: opening it is on every request's path, and scanning a few
// kilobytes of token text as JSON would cost far more than decrypting them.
type session struct {
	Created      time.Time // login time
	Expires      time.Time // absolute end of the session
	AccessExpiry time.Time // zero: unknown, never refreshed
	Claims       []byte    // verified ID-token claims, a JSON object
	// The tokens share the opened cookie's buffer (never modified after opening),
	// so opening a session copies nothing.
	IDToken      []byte // kept for the logout hint
	AccessToken  []byte
	RefreshToken []byte
}

func (s *session) marshal() []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+4*binary.MaxVarintLen32+
		len(s.Claims)+len(s.IDToken)+len(s.AccessToken)+len(s.RefreshToken))
	b = append(b, sessionFormat)
	b = binary.AppendUvarint(b, unixOrZero(s.Created))
	b = binary.AppendUvarint(b, unixOrZero(s.Expires))
	b = binary.AppendUvarint(b, unixOrZero(s.AccessExpiry))
	for _, f := range [][]byte{s.Claims, s.IDToken, s.AccessToken, s.RefreshToken} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

var errSessionFormat = errors.New("session: bad encoding")

// parseSession decodes marshal's output. The input was authenticated by AES-GCM, so
// errors here mean a bug or a format change, but the decoder is strict anyway.
func parseSession(b []byte) (*session, error) {
	if len(b) == 0 || b[0] != sessionFormat {
		return nil, errSessionFormat
	}
	b = b[1:]
	var times [3]time.Time
	for i := range times {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 1<<40 {
			return nil, errSessionFormat
		}
		if v != 0 {
			times[i] = time.Unix(int64(v), 0)
		}
		b = b[n:]
	}
	var fields [4][]byte
	for i := range fields {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, errSessionFormat
		}
		fields[i] = b[n : n+int(l) : n+int(l)]
		b = b[n+int(l):]
	}
	if len(b) != 0 {
		return nil, errSessionFormat
	}
	return &session{
		Created: times[0], Expires: times[1], AccessExpiry: times[2],
		Claims: fields[0], IDToken: fields[1], AccessToken: fields[2], RefreshToken: fields[3],
	}, nil
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

// sessionAAD is the associated data for the session cookie on this request's host.
func (l *Login) sessionAAD(dst []byte, host string) []byte {
	return cookieAAD(dst, l.cookieName, host)
}

// readSession opens the session cookie. present tells whether any chunk was sent
// (so a bad one can be cleared); n is the number of chunks sent.
func (l *Login) readSession(r *http.Request) (s *session, n int, err error) {
	value, n, err := readChunks(r, l.cookieName)
	if err != nil || n == 0 {
		return nil, n, err
	}
	var aadBuf [192]byte
	pt, err := l.keys.Load().open(l.sessionAAD(aadBuf[:0], r.Host), value)
	if err != nil {
		return nil, n, err
	}
	s, err = parseSession(pt)
	if err != nil {
		return nil, n, err
	}
	if !l.now().Before(s.Expires) {
		return nil, n, ErrSessionExpired
	}
	return s, n, nil
}

// writeSession seals s into the session cookie chunks for this request's host.
func (l *Login) writeSession(w http.ResponseWriter, r *http.Request, s *session, had int) error {
	var aadBuf [192]byte
	value, err := l.keys.Load().seal(l.sessionAAD(aadBuf[:0], r.Host), s.marshal())
	if err != nil {
		return err
	}
	return writeChunks(w, l.cookieName, value, s.Expires, had)
}
