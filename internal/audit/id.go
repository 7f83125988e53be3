package audit

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// newID returns a UUIDv7 (RFC 9562 §5.7): 48 bits of Unix milliseconds from t, then
// random bits. Ids sort by event time and let a SIEM de-duplicate the repeats that
// at-least-once delivery will produce.
func newID(t time.Time) string {
	var u [16]byte
	ms := uint64(t.UnixMilli())
	u[0], u[1], u[2] = byte(ms>>40), byte(ms>>32), byte(ms>>24)
	u[3], u[4], u[5] = byte(ms>>16), byte(ms>>8), byte(ms)
	rand.Read(u[6:])        // never fails (crypto/rand crashes the program instead)
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
