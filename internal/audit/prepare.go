package audit

import (
	"time"
	"unicode/utf8"
)

// What the Logger does to an event before it is queued, in the caller's
// goroutine: it fills the id, time and instance, redacts, pseudonymizes and
// bounds the fields.

// prepare fills what the Logger owns in an event and redacts it.
func (l *Logger) prepare(ev *Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.ID == "" {
		ev.ID = newID(ev.Time)
	}
	if ev.Instance == "" {
		ev.Instance = *l.instance.Load()
	}
	// Redact before truncating: a cut could otherwise split a key from its value.
	ev.Query = RedactQuery(ev.Query, l.sensitive)
	if p := l.pseudonyms.Load(); p != nil {
		p.apply(ev)
	}
	l.truncate(ev)
}

func (l *Logger) truncate(ev *Event) {
	for _, f := range []*string{&ev.Path, &ev.Query, &ev.Host, &ev.SNI, &ev.UserAgent, &ev.Upstream.URL} {
		if cut, ok := cutUTF8(*f, l.maxField); ok {
			*f = cut
			ev.Truncated = true
		}
	}
	if ev.Decision != nil {
		if cut, ok := cutUTF8(ev.Decision.Reason, l.maxField); ok {
			// A copy: the decision may be shared with the request's other record.
			d := *ev.Decision
			d.Reason = cut
			ev.Decision = &d
			ev.Truncated = true
		}
	}
}

// cutUTF8 shortens s to at most n bytes without splitting a rune.
func cutUTF8(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}
