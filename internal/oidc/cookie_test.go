package oidc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSessionKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xAB}, SessionKeyLen)
	for _, tc := range []struct {
		name    string
		in      []byte
		wantErr bool
	}{
		{"raw 32 bytes", raw, false},
		{"base64 std", []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), false},
		{"base64 raw url", []byte("  " + base64.RawURLEncoding.EncodeToString(raw)), false},
		{"too short", raw[:16], true},
		{"base64 of 16 bytes", []byte(base64.StdEncoding.EncodeToString(raw[:16])), true},
		{"empty", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseSessionKey(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && !bytes.Equal(k, raw) {
				t.Errorf("key = %x, want %x", k, raw)
			}
		})
	}
}

func TestLoadSessionKeys(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := testKey(t), testKey(t)
	p1, p2 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2")
	if err := os.WriteFile(p1, []byte(base64.StdEncoding.EncodeToString(k1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p2, k2, 0o600); err != nil {
		t.Fatal(err)
	}
	both, err := LoadSessionKeys(p1, p2)
	if err != nil {
		t.Fatal(err)
	}
	only2, _ := NewSessionKeys(k2)
	only1, _ := NewSessionKeys(k1)
	aad := []byte("aad")
	old, _ := only2.seal(aad, []byte("old"))
	if pt, err := both.open(aad, old); err != nil || string(pt) != "old" {
		t.Errorf("second key does not open: %q %v", pt, err)
	}
	fresh, _ := both.seal(aad, []byte("new"))
	if _, err := only1.open(aad, fresh); err != nil {
		t.Errorf("first key does not open what the set sealed: %v", err)
	}
	if _, err := only2.open(aad, fresh); !errors.Is(err, ErrSealUnknownKey) {
		t.Errorf("second key opened what the first sealed: %v", err)
	}
	if _, err := LoadSessionKeys(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing key file loaded")
	}
	if _, err := LoadSessionKeys(); err == nil {
		t.Error("empty key list accepted")
	}
}

func TestSealOpen(t *testing.T) {
	keys, _ := NewSessionKeys(testKey(t))
	other, _ := NewSessionKeys(testKey(t))
	sameID := sameIDKeys(t, keys.keys[0].id)
	aad := cookieAAD(nil, "n", "gw.example:443")
	sealed, err := keys.seal(aad, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b, _ := base64.RawURLEncoding.DecodeString(s)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	for _, tc := range []struct {
		name    string
		keys    *SessionKeys
		aad     []byte
		value   string
		wantErr error
	}{
		{"ok; port does not matter", keys, cookieAAD(nil, "n", "GW.example"), sealed, nil},
		{"other host", keys, cookieAAD(nil, "n", "gw2.example"), sealed, ErrSealInvalid},
		{"other cookie name", keys, cookieAAD(nil, "n-login", "gw.example"), sealed, ErrSealInvalid},
		{"unknown key", other, aad, sealed, ErrSealUnknownKey},
		{"unknown key sharing the id hint", sameID, aad, sealed, ErrSealInvalid},
		{"flipped ciphertext bit", keys, aad, flip(sealed, 20), ErrSealInvalid},
		{"flipped nonce bit", keys, aad, flip(sealed, 3), ErrSealInvalid},
		{"wrong version", keys, aad, flip(sealed, 0), ErrSealInvalid},
		{"truncated", keys, aad, sealed[:20], ErrSealInvalid},
		{"not base64", keys, aad, "!!!" + sealed, ErrSealInvalid},
		{"empty", keys, aad, "", ErrSealInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := tc.keys.open(tc.aad, tc.value)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && string(pt) != "payload" {
				t.Errorf("plaintext %q", pt)
			}
		})
	}
}

// sameIDKeys returns a key set whose only key is not any testKey key but has
// the id hint id, so that opening tries it and fails authentication.
func sameIDKeys(t *testing.T, id byte) *SessionKeys {
	t.Helper()
	k := make([]byte, SessionKeyLen)
	for i := range 1 << 16 {
		k[0], k[1] = byte(i), byte(i>>8)
		if keyIDOf(t, k) == id {
			sk, _ := NewSessionKeys(k)
			return sk
		}
	}
	t.Fatalf("no key with id hint %d", id)
	return nil
}

func TestChunks(t *testing.T) {
	for _, size := range []int{1, maxChunkLen, maxChunkLen + 1, 3*maxChunkLen + 7} {
		value := strings.Repeat("v", size)
		rec := httptest.NewRecorder()
		if err := writeChunks(rec, "s", value, time.Now().Add(time.Hour), 5); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", "/", nil)
		live := 0
		for _, c := range rec.Result().Cookies() {
			if len(c.Value) > maxChunkLen {
				t.Errorf("chunk %s has %d bytes", c.Name, len(c.Value))
			}
			if c.MaxAge < 0 {
				continue // stale chunk expired
			}
			live++
			req.AddCookie(c)
		}
		if want := (size + maxChunkLen - 1) / maxChunkLen; live != want {
			t.Errorf("size %d: %d chunks, want %d", size, live, want)
		}
		got, n, err := readChunks(req, "s")
		if err != nil || got != value || n != live {
			t.Errorf("size %d: read back %d bytes, n=%d, err %v", size, len(got), n, err)
		}
	}
	if err := writeChunks(httptest.NewRecorder(), "s", strings.Repeat("v", maxChunks*maxChunkLen+1), time.Now(), 0); !errors.Is(err, errTooManyChunks) {
		t.Errorf("oversized session: err %v, want %v", err, errTooManyChunks)
	}
}

func TestReadChunksBadInput(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cookie  string
		want    string
		wantN   int
		wantErr error
	}{
		{"none", "a=1", "", 0, nil},
		{"one", "s_0=abc", "abc", 1, nil},
		{"two in order", "s_1=def; s_0=abc", "abcdef", 2, nil},
		{"gap", "s_0=abc; s_2=ghi", "", 3, ErrSealInvalid},
		{"duplicate (planted)", "s_0=abc; s_0=xyz", "", maxChunks, ErrSealInvalid},
		{"too many", "s_10=x", "", maxChunks, errTooManyChunks},
		{"lookalike names ignored", "s_00=x; s_+1=y; s_-1=z; s_x=w; s_0=ok", "ok", 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Cookie", tc.cookie)
			got, n, err := readChunks(r, "s")
			if !errors.Is(err, tc.wantErr) || got != tc.want || n != tc.wantN {
				t.Errorf("got %q n=%d err=%v, want %q n=%d err=%v", got, n, err, tc.want, tc.wantN, tc.wantErr)
			}
		})
	}
}

func TestSessionEncoding(t *testing.T) {
	s := &session{
		ID: [sessionIDLen]byte{1, 2, 3}, Tokens: sealID{9, 8, 7}, TokensLen: 2345, Refreshable: true,
		Created: time.Unix(1700000000, 0), Expires: time.Unix(1700028800, 0), AccessExpiry: time.Unix(1700003600, 0),
		Claims: []byte(`{"iss":"https://idp","sub":"alice","aud":["gw","x"],"azp":"gw","groups":["dev"]}`),
	}
	got, err := parseSession(s.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	a, err := got.auth()
	if err != nil {
		t.Fatal(err)
	}
	if a.Principal != "https://idp/alice" || a.Presenter != "gw" || !cmp.Equal(a.Audiences, []string{"gw", "x"}) {
		t.Errorf("auth = %+v", a)
	}
	m := s.marshal()
	flags := 1 + sessionIDLen + len(sealID{})
	badFlags := bytes.Clone(m)
	badFlags[flags] |= 2
	for name, bad := range map[string][]byte{
		"empty": nil, "format 1": append([]byte{1}, m[1:]...), "format 3": append([]byte{3}, m[1:]...),
		"only the format": {sessionFormat}, "trailing byte": append(bytes.Clone(m), 0), "truncated": m[:len(m)-1],
		"cut in the header": m[:20], "unknown flag": badFlags,
	} {
		if _, err := parseSession(bad); !errors.Is(err, errSessionFormat) {
			t.Errorf("parseSession(%s): err %v, want %v", name, err, errSessionFormat)
		}
	}
	noSub := &session{Claims: []byte(`{"iss":"x"}`)}
	if _, err := noSub.auth(); err == nil {
		t.Error("claims without sub accepted")
	}
}

func TestTokensEncoding(t *testing.T) {
	tok := &sessionTokens{ID: [sessionIDLen]byte{4, 5}, IDToken: []byte("h.p.s"), AccessToken: []byte("at"), RefreshToken: []byte{}}
	got, err := parseTokens(tok.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	m := tok.marshal()
	for name, bad := range map[string][]byte{
		"empty": nil, "session format": append([]byte{sessionFormat}, m[1:]...), "no fields": m[:1+sessionIDLen],
		"trailing byte": append(bytes.Clone(m), 0), "truncated": m[:len(m)-1],
	} {
		if _, err := parseTokens(bad); !errors.Is(err, errSessionFormat) {
			t.Errorf("parseTokens(%s): err %v, want %v", name, err, errSessionFormat)
		}
	}
}

// FuzzParseSession: the decoder never panics and round-trips what it accepts.
func FuzzParseSession(f *testing.F) {
	f.Add((&session{Claims: []byte(`{}`), Refreshable: true, TokensLen: 3000}).marshal())
	f.Add(append([]byte{sessionFormat}, make([]byte, sessionIDLen+len(sealID{})+6)...))
	f.Add(append(append([]byte{sessionFormat}, make([]byte, sessionIDLen+len(sealID{})+1)...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSession(b)
		if err != nil {
			return
		}
		if again, err := parseSession(s.marshal()); err != nil || !cmp.Equal(s, again) {
			t.Fatalf("re-encoding changed the session: %v", err)
		}
	})
}

// FuzzParseTokens: the decoder never panics and round-trips what it accepts.
func FuzzParseTokens(f *testing.F) {
	f.Add((&sessionTokens{IDToken: []byte("a"), RefreshToken: []byte("r")}).marshal())
	f.Add(append([]byte{tokensFormat}, make([]byte, sessionIDLen+3)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := parseTokens(b)
		if err != nil {
			return
		}
		if again, err := parseTokens(tok.marshal()); err != nil || !cmp.Equal(tok, again) {
			t.Fatalf("re-encoding changed the tokens: %v", err)
		}
	})
}

// FuzzSessionCookie: arbitrary Cookie headers never open as a session other than the one sealed.
func FuzzSessionCookie(f *testing.F) {
	keys, _ := NewSessionKeys(bytes.Repeat([]byte{7}, SessionKeyLen))
	plain := (&session{Expires: time.Now().Add(time.Hour), Claims: []byte(`{"iss":"i","sub":"s"}`)}).marshal()
	valid, _ := keys.seal(cookieAAD(nil, "s", "gw"), plain)
	f.Add("s_0=" + valid)
	f.Add("s_0=" + valid[:len(valid)/2] + "; s_1=" + valid[len(valid)/2:])
	f.Add("s_0=" + valid[:len(valid)/4*4] + "; s_1=" + valid[len(valid)/4*4:])
	f.Add("s_0=AQ; s_1=")
	f.Fuzz(func(t *testing.T, cookie string) {
		r := &http.Request{Header: http.Header{"Cookie": {cookie}}, Host: "gw"}
		c := chunks{name: "s"}
		readChunkSets(r, &c)
		if c.err != nil || c.n == 0 {
			return
		}
		// Only the sealed plaintext itself may ever come out: nothing forged.
		pt, err := keys.openChunks(cookieAAD(nil, "s", "gw"), c.parts())
		if err == nil && !bytes.Equal(pt, plain) {
			t.Fatalf("forged value opened: %q", cookie)
		}
		// Chunk by chunk is the same as joined, or refused.
		joined, jerr := keys.open(cookieAAD(nil, "s", "gw"), strings.Join(c.parts(), ""))
		if err == nil && (jerr != nil || !bytes.Equal(joined, pt)) {
			t.Fatalf("chunked open differs from joined: %v", jerr)
		}
	})
}

func TestOpenChunks(t *testing.T) {
	keys, _ := NewSessionKeys(bytes.Repeat([]byte{7}, SessionKeyLen))
	plain := bytes.Repeat([]byte("0123456789"), 700) // several 1 KiB stack pieces, two cookie chunks
	v, err := keys.seal([]byte("aad"), plain)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		parts   []string
		wantErr error
	}{
		{"whole", []string{v}, nil},
		{"as writeChunks cuts it", []string{v[:maxChunkLen], v[maxChunkLen:]}, nil},
		{"cut in whole quanta", []string{v[:8], v[8:4000], v[4000:]}, nil},
		{"cut inside a quantum", []string{v[:9], v[9:]}, ErrSealInvalid},
		{"chunk missing", []string{v[:maxChunkLen]}, ErrSealInvalid},
		{"empty", nil, ErrSealInvalid},
		{"too short for a header", []string{v[:20]}, ErrSealInvalid},
		{"not base64url", []string{v[:100] + "+" + v[101:]}, ErrSealInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := keys.openChunks([]byte("aad"), tc.parts)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && !bytes.Equal(pt, plain) {
				t.Errorf("plaintext differs")
			}
		})
	}
	if _, err := keys.openChunks([]byte("other aad"), []string{v}); !errors.Is(err, ErrSealInvalid) {
		t.Errorf("other aad: err %v, want %v", err, ErrSealInvalid)
	}
}

func TestSealID(t *testing.T) {
	keys, _ := NewSessionKeys(bytes.Repeat([]byte{7}, SessionKeyLen))
	v1, _ := keys.seal(nil, []byte("x"))
	v2, _ := keys.seal(nil, []byte("x"))
	id1, ok1 := sealIDOf(v1)
	id2, ok2 := sealIDOf(v2)
	if !ok1 || !ok2 || id1 == id2 {
		t.Fatalf("sealIDOf: %x %v, %x %v; want two different ids", id1, ok1, id2, ok2)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(v1)
	if !bytes.Equal(id1[:], raw[1:sealHeader]) {
		t.Errorf("sealIDOf = %x, want key id and nonce %x", id1, raw[1:sealHeader])
	}
	for _, bad := range []string{"", v1[:19], "AgAAAAAAAAAAAAAAAAAA", "!" + v1[1:]} {
		if _, ok := sealIDOf(bad); ok {
			t.Errorf("sealIDOf(%q) ok, want refused", bad)
		}
	}
}

func TestCookieHost(t *testing.T) {
	for in, want := range map[string]string{
		"gw.example": "gw.example", "GW.Example:8443": "gw.example", "127.0.0.1:443": "127.0.0.1",
		"[::1]:8443": "::1", "[::1]": "::1", "::1": "::1",
	} {
		if got := cookieHost(in); got != want {
			t.Errorf("cookieHost(%q) = %q, want %q", in, got, want)
		}
	}
}
