package pathnorm

import "strings"

// validateQuery checks the raw query q, which starts at offset off of the
// request-target. The query is forwarded as sent, so only what would make
// the policy and the upstream read it differently is refused: raw control
// characters, space and non-ASCII bytes, %00, and invalid escapes.
// Escaped control characters other than %00 (a %0A from a text area) are
// legitimate form data and pass.
func validateQuery(q string, off int) error {
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c == '%' {
			v, ok := escapeAt(q, i)
			if !ok {
				return fail(ErrInvalidEscape, "query", off+i)
			}
			if v == 0 {
				return fail(ErrControlChar, "query", off+i)
			}
			i += 2
			continue
		}
		if queryInvalid[c] {
			if isControl(c) {
				return fail(ErrControlChar, "query", off+i)
			}
			return fail(ErrInvalidChar, "query", off+i)
		}
	}
	return nil
}

// ParseQuery decodes a raw query (without the '?') once into its
// parameters, keeping every value of a repeated key in order.
//
// Pairs are separated by '&' only; empty pairs are skipped; a key without
// '=' has the value "". '+' decodes to a space, as in HTML form encoding
// and Go's url.ParseQuery, because that is how the upstream frameworks
// read it. The input is validated as Normalize validates a query, and an
// unescaped ';' is refused with ErrQuerySemicolon: some backends split
// pairs on it and others do not, so "a=1;a=2" would mean different things
// to the policy and to the upstream (parameter cloaking). An escaped %3B
// is an ordinary character.
func ParseQuery(raw string) (map[string][]string, error) {
	if err := checkQuery(raw); err != nil {
		return nil, err
	}
	m := make(map[string][]string)
	for {
		k, v, rest, ok := nextPair(raw)
		if !ok {
			return m, nil
		}
		raw = rest
		k, v = unescapeQuery(k), unescapeQuery(v)
		m[k] = append(m[k], v)
	}
}

// QueryParam reads one parameter of a raw query as ParseQuery reads it, with
// the same checks, split and decoding (the code is shared, so the two can't
// disagree: a parser differential between the JWT extraction and the policy
// would let a token reach the upstream unverified). It returns the first
// value of name, how many values name has, and ParseQuery's error for a
// query it refuses. Unlike ParseQuery it builds no map: only a key or value
// that is escaped costs an allocation.
func QueryParam(raw, name string) (first string, n int, err error) {
	if err := checkQuery(raw); err != nil {
		return "", 0, err
	}
	for {
		k, v, rest, ok := nextPair(raw)
		if !ok {
			return first, n, nil
		}
		raw = rest
		if unescapeQuery(k) != name {
			continue
		}
		if n == 0 {
			first = unescapeQuery(v)
		}
		n++
	}
}

// checkQuery is what ParseQuery and QueryParam refuse.
func checkQuery(raw string) error {
	if err := validateQuery(raw, 0); err != nil {
		return err
	}
	if i := strings.IndexByte(raw, ';'); i >= 0 {
		return fail(ErrQuerySemicolon, "query", i)
	}
	return nil
}

// nextPair splits the first non-empty pair off a checked raw query: its key
// and value still escaped, and the rest. Pairs are separated by '&' only,
// empty pairs are skipped, a key without '=' has the value "". ok is false
// when no pair is left.
func nextPair(raw string) (k, v, rest string, ok bool) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair != "" {
			k, v, _ = strings.Cut(pair, "=")
			return k, v, raw, true
		}
	}
	return "", "", "", false
}

// unescapeQuery decodes a validated query component once, '+' as space.
func unescapeQuery(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			v, _ := escapeAt(s, i)
			b.WriteByte(v)
			i += 2
		case '+':
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
