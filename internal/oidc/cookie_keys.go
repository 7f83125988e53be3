package oidc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// SessionKeyLen is the size of one session key: AES-256.
const SessionKeyLen = 32

// Errors from opening a sealed cookie. Callers treat every one as "no session".
var (
	// ErrSealUnknownKey: the cookie was sealed with a key this gateway does not hold
	// (rotated out long ago, or forged with an attacker's key).
	ErrSealUnknownKey = errors.New("sealed with an unknown key")
	// ErrSealInvalid: the cookie is malformed or was altered after sealing, or it was
	// sealed for another cookie name or host.
	ErrSealInvalid = errors.New("sealed value is malformed or tampered")
)

// sealEncoding is strict so that each sealed value has exactly one text form.
var sealEncoding = base64.RawURLEncoding.Strict()

const (
	sealVersion  = 1
	sealNonceLen = 12
	sealHeader   = 2 + sealNonceLen // version, key id, nonce
)

// SessionKeys are the AES-256-GCM keys that seal session and login-state cookies.
// The first key seals; every key opens, so a key can be rotated in front of the
// old one and the old one removed once its cookies have expired. A SessionKeys is
// immutable and safe for concurrent use.
type SessionKeys struct {
	keys []sessionKey
}

type sessionKey struct {
	id   byte // a hint only: several keys may share an id, and then each is tried
	aead cipher.AEAD
}

// NewSessionKeys builds keys from raw 32-byte secrets; keys[0] seals.
func NewSessionKeys(keys ...[]byte) (*SessionKeys, error) {
	if len(keys) == 0 {
		return nil, errors.New("session keys: need at least one key")
	}
	sk := &SessionKeys{keys: make([]sessionKey, 0, len(keys))}
	for i, k := range keys {
		if len(k) != SessionKeyLen {
			return nil, fmt.Errorf("session key %d: got %d bytes, want %d", i, len(k), SessionKeyLen)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("session key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("session key %d: %w", i, err)
		}
		sum := sha256.Sum256(append([]byte("tollgate session key id\x00"), k...))
		sk.keys = append(sk.keys, sessionKey{id: sum[0], aead: aead})
	}
	return sk, nil
}

// LoadSessionKeys reads one key per file (see ParseSessionKey); the first file's key seals.
func LoadSessionKeys(paths ...string) (*SessionKeys, error) {
	raw := make([][]byte, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("session key: %w", err)
		}
		k, err := ParseSessionKey(b)
		if err != nil {
			return nil, fmt.Errorf("session key %s: %w", p, err)
		}
		raw = append(raw, k)
	}
	return NewSessionKeys(raw...)
}

// ParseSessionKey accepts a key file's content: exactly 32 raw bytes, or base64
// (standard or URL alphabet, padded or not) of 32 bytes, surrounded by optional whitespace.
func ParseSessionKey(data []byte) ([]byte, error) {
	if len(data) == SessionKeyLen {
		return bytes.Clone(data), nil
	}
	s := string(bytes.TrimSpace(data))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == SessionKeyLen {
			return k, nil
		}
	}
	return nil, fmt.Errorf("want %d raw bytes or base64 of %d bytes (got %d bytes)", SessionKeyLen, SessionKeyLen, len(data))
}

// seal encrypts plaintext bound to aad and returns it as base64url text, a valid
// cookie value. Layout before encoding: version | key id | nonce | ciphertext+tag.
func (sk *SessionKeys) seal(aad, plaintext []byte) (string, error) {
	k := sk.keys[0]
	buf := make([]byte, sealHeader, sealHeader+len(plaintext)+k.aead.Overhead())
	buf[0], buf[1] = sealVersion, k.id
	// Random 96-bit nonces: safe for well under 2^32 seals per key; keys rotate long before.
	if _, err := rand.Read(buf[2:sealHeader]); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	buf = k.aead.Seal(buf, buf[2:sealHeader], plaintext, aad)
	return sealEncoding.EncodeToString(buf), nil
}

// open reverses seal.
func (sk *SessionKeys) open(aad []byte, sealed string) ([]byte, error) {
	return sk.openChunks(aad, []string{sealed})
}

// openChunks reverses seal for a value sent in chunks, decoding each chunk in
// turn instead of joining them first. The returned plaintext aliases a fresh
// buffer owned by the caller; it is the only allocation (the associated data is
// copied behind the plaintext: the AEAD interface would make the caller's buffer
// escape otherwise).
func (sk *SessionKeys) openChunks(aad []byte, parts []string) ([]byte, error) {
	total := 0
	for i, p := range parts {
		// Every chunk but the last is whole base64 quanta, as writeChunks cuts them;
		// anything else is another text form of some value, refused so that each
		// sealed value has exactly one.
		if i < len(parts)-1 && len(p)%4 != 0 {
			return nil, ErrSealInvalid
		}
		total += len(p)
	}
	dlen := sealEncoding.DecodedLen(total)
	if dlen < sealHeader+16 {
		return nil, ErrSealInvalid
	}
	buf := make([]byte, dlen+len(aad))
	// The text is copied to the stack in whole quanta and decoded from there: a
	// string-to-bytes conversion would allocate the whole value again.
	var src [1024]byte
	off := 0
	for _, p := range parts {
		for len(p) > 0 {
			k := copy(src[:], p)
			n, err := sealEncoding.Decode(buf[off:dlen], src[:k])
			if err != nil {
				return nil, ErrSealInvalid
			}
			off, p = off+n, p[k:]
		}
	}
	if off != dlen || buf[0] != sealVersion {
		return nil, ErrSealInvalid
	}
	ad := buf[dlen:]
	copy(ad, aad)
	nonce, ct := buf[2:sealHeader:sealHeader], buf[sealHeader:dlen:dlen]
	candidates := 0
	for _, k := range sk.keys {
		if k.id == buf[1] {
			candidates++
		}
	}
	if candidates == 0 {
		return nil, ErrSealUnknownKey
	}
	for _, k := range sk.keys {
		if k.id != buf[1] {
			continue
		}
		candidates--
		// Decrypt in place. A failed Open wipes its output, so keep a copy of the
		// ciphertext while another key with the same id is still to be tried.
		in := ct
		if candidates > 0 {
			in = bytes.Clone(ct)
		}
		if pt, err := k.aead.Open(in[:0], nonce, in, ad); err == nil {
			return pt[:len(pt):len(pt)], nil
		}
	}
	return nil, ErrSealInvalid
}

// sealID names one sealed value: its key id and random nonce, both in the clear
// at its start. A value that names another sealed value by its sealID is bound
// to it: only the key holder can make another value that opens under that nonce.
type sealID [1 + sealNonceLen]byte

// sealIDOf reads the sealID from the start of a sealed value's text (its first
// chunk suffices) without decrypting it.
func sealIDOf(sealed string) (id sealID, ok bool) {
	const textLen = (sealHeader + 2) / 3 * 4 // whole quanta covering the header
	if len(sealed) < textLen {
		return id, false
	}
	var src [textLen]byte
	var dst [textLen / 4 * 3]byte
	copy(src[:], sealed)
	if _, err := sealEncoding.Decode(dst[:], src[:]); err != nil || dst[0] != sealVersion {
		return id, false
	}
	copy(id[:], dst[1:sealHeader])
	return id, true
}
