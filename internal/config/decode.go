package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	goccy "github.com/goccy/go-yaml"
	goccyparser "github.com/goccy/go-yaml/parser"
	"gopkg.in/yaml.v3"
)

// Position is where a value stands in its file.
type Position struct {
	File string
	Line int
	Col  int
}

// Decoder decodes YAML nodes into Go values strictly: an unknown field, a repeated
// key or a value of the wrong type is an error, and decoding goes on so that every
// problem of a file is reported at once. It remembers the position of every field
// path it decodes, so that validation after decoding can report positioned errors
// with Errorf.
//
// Struct fields are matched by their `yaml:"name"` tag; fields without one are not
// decoded. A field tagged `yaml:",inline"` has its fields decoded at the same level.
type Decoder struct {
	File string
	Errs Errors
	pos  map[string]Position
	// nodes counts decoded nodes: aliases can make a small document expand
	// exponentially ("billion laughs"), so decoding stops past maxNodes.
	nodes int
}

const maxNodes = 1 << 20

// Unmarshaler is implemented by types that decode themselves from a node.
type Unmarshaler interface {
	UnmarshalConfig(d *Decoder, node *yaml.Node, path string)
}

// NewDecoder returns a decoder that reports errors against file.
func NewDecoder(file string) *Decoder {
	return &Decoder{File: file, pos: make(map[string]Position)}
}

// ParseDocuments splits YAML source into its documents. A syntax error is returned
// as a positioned Error.
func ParseDocuments(file string, src []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(src)))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, Errors{syntaxError(file, src, err)}
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 && !isNull(n.Content[0]) {
			docs = append(docs, n.Content[0])
		}
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError positions a YAML syntax error of src. yaml.v3 names the line
// only, so the same bytes are given to a second parser that tracks columns
// (github.com/goccy/go-yaml): when it fails too, its position and its words
// are reported; otherwise yaml.v3's line, at column 1.
func syntaxError(file string, src []byte, err error) Error {
	var se *goccy.SyntaxError
	if _, perr := goccyparser.ParseBytes(src, 0); errors.As(perr, &se) && se.Token != nil && se.Token.Position != nil {
		return Error{File: file, Line: se.Token.Position.Line, Col: se.Token.Position.Column, Msg: "invalid YAML: " + se.Message}
	}
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Error{File: file, Line: line, Col: 1, Msg: "invalid YAML: " + m[2]}
	}
	return Error{File: file, Line: 1, Col: 1, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// ReadDocuments reads a file and splits it into YAML documents.
func ReadDocuments(file string) ([]*yaml.Node, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("cannot read: %v", unwrapPathError(err))}}
	}
	return ParseDocuments(file, src)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Pos returns the recorded position of path, or of its nearest recorded parent.
func (d *Decoder) Pos(path string) Position {
	for p := path; ; {
		if pos, ok := d.pos[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			break
		}
		p = p[:i]
	}
	if pos, ok := d.pos[""]; ok {
		return pos
	}
	return Position{File: d.File}
}

// Errorf records a problem at the position of path.
func (d *Decoder) Errorf(path, format string, args ...any) {
	p := d.Pos(path)
	d.Errs = append(d.Errs, Error{File: d.File, Line: p.Line, Col: p.Col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// NodeErrorf records a problem at the position of node.
func (d *Decoder) NodeErrorf(node *yaml.Node, path, format string, args ...any) {
	d.Errs = append(d.Errs, Error{File: d.File, Line: node.Line, Col: node.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Has reports whether path was present in the decoded YAML.
func (d *Decoder) Has(path string) bool {
	_, ok := d.pos[path]
	return ok
}

// Decode decodes node into v, which must be a non-nil pointer.
func (d *Decoder) Decode(node *yaml.Node, path string, v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("config: Decode needs a non-nil pointer")
	}
	d.decode(node, path, rv.Elem())
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[Unmarshaler]()
)

func (d *Decoder) decode(node *yaml.Node, path string, v reflect.Value) {
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.NodeErrorf(node, path, "document too large after alias expansion (more than %d values)", maxNodes)
		}
		return
	}
	d.pos[path] = Position{File: d.File, Line: node.Line, Col: node.Column}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		v.Addr().Interface().(Unmarshaler).UnmarshalConfig(d, node, path)
		return
	}
	if isNull(node) {
		return // leave the zero value: an empty field means "not set"
	}
	if v.Type() == durationType {
		d.decodeDuration(node, path, v)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(node, path, v.Elem())
	case reflect.Struct:
		d.decodeStruct(node, path, v)
	case reflect.Slice:
		d.decodeSlice(node, path, v)
	case reflect.Map:
		d.decodeMap(node, path, v)
	case reflect.String:
		if s, ok := d.scalar(node, path, "string", "!!str", "!!int", "!!float"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if s, ok := d.scalar(node, path, "boolean", "!!bool"); ok {
			b, _ := strconv.ParseBool(strings.ToLower(s))
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if s, ok := d.scalar(node, path, "integer", "!!int"); ok {
			n, err := strconv.ParseInt(s, 0, v.Type().Bits())
			if err != nil {
				d.NodeErrorf(node, path, "integer out of range (got %s)", s)
				return
			}
			v.SetInt(n)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if s, ok := d.scalar(node, path, "non-negative integer", "!!int"); ok {
			n, err := strconv.ParseUint(s, 0, v.Type().Bits())
			if err != nil {
				d.NodeErrorf(node, path, "want a non-negative integer that fits %d bits (got %s)", v.Type().Bits(), s)
				return
			}
			v.SetUint(n)
		}
	case reflect.Float32, reflect.Float64:
		if s, ok := d.scalar(node, path, "number", "!!int", "!!float"); ok {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				d.NodeErrorf(node, path, "invalid number (got %s)", s)
				return
			}
			v.SetFloat(f)
		}
	case reflect.Interface:
		var x any
		if err := node.Decode(&x); err != nil {
			d.NodeErrorf(node, path, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		panic(fmt.Sprintf("config: cannot decode into %s", v.Type()))
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName names a node's type for error messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "string"
		case "!!int":
			return "integer"
		case "!!float":
			return "number"
		case "!!bool":
			return "boolean"
		case "!!null":
			return "null"
		}
		return "scalar " + n.ShortTag()
	}
	return "node"
}

// scalar returns the node's value if it is a scalar with one of tags.
func (d *Decoder) scalar(node *yaml.Node, path, want string, tags ...string) (string, bool) {
	if node.Kind == yaml.ScalarNode {
		for _, t := range tags {
			if node.ShortTag() == t {
				return node.Value, true
			}
		}
	}
	d.NodeErrorf(node, path, "wrong type (got %s %s, want %s)", kindName(node), quoteValue(node), want)
	return "", false
}

func quoteValue(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return ""
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return strconv.Quote(v)
}

func (d *Decoder) decodeDuration(node *yaml.Node, path string, v reflect.Value) {
	s, ok := d.scalar(node, path, `duration such as "10s"`, "!!str")
	if !ok {
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur < 0 {
		d.NodeErrorf(node, path, `invalid duration (got %q, want a non-negative duration such as "10s" or "1m30s")`, s)
		return
	}
	v.SetInt(int64(dur))
}

func (d *Decoder) decodeSlice(node *yaml.Node, path string, v reflect.Value) {
	if node.Kind != yaml.SequenceNode {
		d.NodeErrorf(node, path, "wrong type (got %s %s, want list)", kindName(node), quoteValue(node))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(node.Content), len(node.Content))
	for i, item := range node.Content {
		d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
	}
	v.Set(s)
}

func (d *Decoder) decodeMap(node *yaml.Node, path string, v reflect.Value) {
	if node.Kind != yaml.MappingNode {
		d.NodeErrorf(node, path, "wrong type (got %s %s, want mapping)", kindName(node), quoteValue(node))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("config: map keys must be strings")
	}
	m := reflect.MakeMapWithSize(v.Type(), len(node.Content)/2)
	seen := make(map[string]bool)
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, val := node.Content[i], node.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.NodeErrorf(k, path, "map key must be a string (got %s)", kindName(k))
			continue
		}
		sub := path + "." + k.Value
		if path == "" {
			sub = k.Value
		}
		if seen[k.Value] {
			d.NodeErrorf(k, sub, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, sub, elem)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

// fieldIndex maps YAML names to struct field index paths, following inline fields.
func fieldIndex(t reflect.Type) map[string][]int {
	out := make(map[string][]int)
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, ok := f.Tag.Lookup("yaml")
			if !ok || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), prefix...), i)
			if opts == "inline" {
				walk(f.Type, idx)
				continue
			}
			out[name] = idx
		}
	}
	walk(t, nil)
	return out
}

func (d *Decoder) decodeStruct(node *yaml.Node, path string, v reflect.Value) {
	if node.Kind != yaml.MappingNode {
		d.NodeErrorf(node, path, "wrong type (got %s %s, want mapping)", kindName(node), quoteValue(node))
		return
	}
	fields := fieldIndex(v.Type())
	seen := make(map[string]bool)
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, val := node.Content[i], node.Content[i+1]
		name := k.Value
		sub := path + "." + name
		if path == "" {
			sub = name
		}
		if k.Kind != yaml.ScalarNode {
			d.NodeErrorf(k, path, "field name must be a string (got %s)", kindName(k))
			continue
		}
		if seen[name] {
			d.NodeErrorf(k, sub, "duplicate field %q", name)
			continue
		}
		seen[name] = true
		idx, ok := fields[name]
		if !ok {
			d.NodeErrorf(k, sub, "unknown field%s", suggest(name, fields))
			continue
		}
		d.decode(val, sub, v.FieldByIndex(idx))
		// The key's position is more useful than the value's for "missing/invalid" errors
		// that validation reports later on a scalar; keep the value's position but make
		// sure a null value still records the key.
		if isNull(val) {
			d.pos[sub] = Position{File: d.File, Line: k.Line, Col: k.Column}
		}
	}
}

// suggest proposes the known field closest to name (case-insensitive match or a
// small edit distance), so "pathprefix" says: did you mean "pathPrefix"?
func suggest(name string, fields map[string][]int) string {
	best, bestDist := "", 3
	for f := range fields {
		if strings.EqualFold(f, name) {
			return fmt.Sprintf(" (did you mean %q?)", f)
		}
		if dist := editDistance(strings.ToLower(f), strings.ToLower(name)); dist < bestDist || (dist == bestDist && best != "" && f < best) {
			best, bestDist = f, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
