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
