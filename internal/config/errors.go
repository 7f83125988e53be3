package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one positioned configuration problem. It prints as
// "file:line:col: path.to.field: problem".
type Error struct {
	File string
	Line int
	Col  int
	// Path is the field path, e.g. "ingress.routes[0].upstream.url"; empty for
	// problems of the document as a whole.
	Path string
	Msg  string
	// Err is the cause, when the problem came from an error (see
	// [Gateway.ErrorFor]): errors.Is and errors.As see through to it.
	Err error
}

// Unwrap returns the cause, if any.
func (e Error) Unwrap() error { return e.Err }

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, max(e.Col, 1))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found, reported at once. It is an error when non-empty.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each problem, so that errors.Is and errors.As look into every
// cause.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Sort orders the errors by file, line, column and message.
func (es Errors) Sort() {
	slices.SortStableFunc(es, func(a, b Error) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
}

// Err returns the sorted list as an error, or nil when there is none.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	es.Sort()
	return es
}

// Combine returns the problems of first and of second as one sorted list,
// without those of second about a field that first already reports a
// problem of (the same field, one inside it or one containing it): a second
// look at a field that failed would only say it again. Both are Errors or
// nil.
func Combine(first, second error) error {
	a, _ := AsErrors(first)
	b, _ := AsErrors(second)
	out := append(Errors(nil), a...)
	for _, e := range b {
		if !a.covers(e.Path) {
			out = append(out, e)
		}
	}
	return out.Err()
}

// covers reports whether es has a problem of the field path, of a field
// inside it, or of a field containing it.
func (es Errors) covers(path string) bool {
	if path == "" {
		return false
	}
	for _, e := range es {
		if e.Path != "" && (within(path, e.Path) || within(e.Path, path)) {
			return true
		}
	}
	return false
}

// within reports whether path is field or a field inside it.
func within(path, field string) bool {
	return path == field || strings.HasPrefix(path, field+".") || strings.HasPrefix(path, field+"[")
}
