package oidc

import (
	"crypto/sha256"
	"sync"
	"time"
)

const (
	defaultTokenCacheSize = 10000
	// maxTokenCacheTTL bounds how long a verified signature is trusted without a
	// fresh check, so a key removed from the JWKS stops working within this time
	// even for tokens that expire much later (or never).
	maxTokenCacheTTL = 5 * time.Minute
)

// tokenCache remembers tokens whose signature has been verified, keyed by a
// hash of the token (the token itself is a secret and never kept as a key).
// Claims checks (exp, nbf, aud) still run on every hit; only the signature
// check is skipped. Entries expire with the token and never live longer than
// maxTokenCacheTTL.
type tokenCache struct {
	mu      sync.Mutex
	max     int
	entries map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	tok *token
	// rule verified the signature; a hit counts only for that rule.
	rule     *rule
	verified *verified
	expires  time.Time
}

// newTokenCache returns a cache of at most size entries, or nil (no caching)
// when size is negative.
func newTokenCache(size int) *tokenCache {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = defaultTokenCacheSize
	}
	return &tokenCache{max: size, entries: make(map[[sha256.Size]byte]cachedToken)}
}

// tokenKey is the cache key of a token: its SHA-256, never the token. A
// token of up to 4 KiB (any token of a usual size) is hashed from a copy on
// the stack: []byte(tok) would cost an allocation on every request.
func tokenKey(tok string) [sha256.Size]byte {
	var buf [4 << 10]byte
	if len(tok) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], tok)])
	}
	return sha256.Sum256([]byte(tok))
}

func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (cachedToken, bool) {
	if c == nil {
		return cachedToken{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return cachedToken{}, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, key)
		return cachedToken{}, false
	}
	return e, true
}

func (c *tokenCache) put(key [sha256.Size]byte, e cachedToken, now time.Time) {
	if c == nil {
		return
	}
	limit := now.Add(maxTokenCacheTTL)
	if e.expires.IsZero() || e.expires.After(limit) {
		e.expires = limit
	}
	if !now.Before(e.expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[key] = e
}

// evict drops expired entries and, if the cache is still full, about a tenth
// of the rest (map iteration order is random, so no attacker can choose which).
// Clearing in batches keeps the amortized cost per insert constant.
func (c *tokenCache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	drop := len(c.entries) - c.max + max(c.max/10, 1)
	for k := range c.entries {
		if drop <= 0 {
			break
		}
		delete(c.entries, k)
		drop--
	}
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
