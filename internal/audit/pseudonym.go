package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Pseudonymize replaces identifiers with a keyed hash when the event is
// built, before it is journaled or sent anywhere: an analyst can still
// correlate ("the same client did X and Y") without the trail holding the
// identifier. The hash is "hmac-sha256:" and the first 32 hex digits of
// HMAC-SHA256(key, field name + "\x00" + value); the field name keeps an
// address and a user that happen to be spelled alike apart.
type Pseudonymize struct {
	key    []byte
	fields map[string]bool
}

// PseudonymFields are the fields Pseudonymize can replace.
var PseudonymFields = []string{"client.address", "auth.principal", "auth.subject", "sourcePrincipal"}

// pseudonymPrefix marks a hashed value.
const pseudonymPrefix = "hmac-sha256:"

// LoadPseudonymize reads the key (at least 32 bytes; the file's bytes as
// they are) and checks the field names.
func LoadPseudonymize(keyFile string, fields []string) (*Pseudonymize, error) {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("audit: pseudonym key: %w", err)
	}
	return NewPseudonymize(key, fields)
}

// NewPseudonymize returns a Pseudonymize for key and fields.
func NewPseudonymize(key []byte, fields []string) (*Pseudonymize, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("audit: pseudonym key of %d bytes: want at least 32", len(key))
	}
	if len(fields) == 0 {
		return nil, errors.New("audit: pseudonymize which fields? (" + strings.Join(PseudonymFields, ", ") + ")")
	}
	p := &Pseudonymize{key: key, fields: map[string]bool{}}
	for _, f := range fields {
		known := false
		for _, k := range PseudonymFields {
			known = known || f == k
		}
		if !known {
			return nil, fmt.Errorf("audit: cannot pseudonymize %q (want one of %s)", f, strings.Join(PseudonymFields, ", "))
		}
		p.fields[f] = true
	}
	return p, nil
}

// Hash is the pseudonym of value in field.
func (p *Pseudonymize) Hash(field, value string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(field))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return pseudonymPrefix + hex.EncodeToString(m.Sum(nil)[:16])
}

// apply replaces the configured fields of ev. An Auth is copied first: it
// may be shared with the request's other record.
func (p *Pseudonymize) apply(ev *Event) {
	swap := func(field string, v *string) {
		if p.fields[field] && *v != "" && !strings.HasPrefix(*v, pseudonymPrefix) {
			*v = p.Hash(field, *v)
		}
	}
	swap("client.address", &ev.Client.Address)
	swap("sourcePrincipal", &ev.SourcePrincipal)
	if ev.Auth != nil && (p.fields["auth.principal"] || p.fields["auth.subject"]) {
		a := *ev.Auth
		swap("auth.principal", &a.Principal)
		swap("auth.subject", &a.Subject)
		ev.Auth = &a
	}
}
