package config

import (
	"bytes"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Effective returns the configuration as the gateway runs it, as YAML: every
// field with its value after defaults, durations as Go durations ("30s"),
// fields in the order of the reference. Absent sections, empty strings and
// empty lists are left out. Secrets are referenced by file and never
// inline; a password in a URL's userinfo is elided all the same.
func (g *Gateway) Effective() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(effectiveNode(reflect.ValueOf(g).Elem())); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var durationKind = reflect.TypeFor[time.Duration]()

// effectiveNode is v as a YAML node, or nil when it is left out.
func effectiveNode(v reflect.Value) *yaml.Node {
	if v.Type() == durationKind {
		return scalar(time.Duration(v.Int()).String(), "!!str")
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return effectiveNode(v.Elem())
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			if c := effectiveNode(v.Field(i)); c != nil {
				n.Content = append(n.Content, scalar(name, "!!str"), c)
			}
		}
		return n
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range v.Len() {
			c := effectiveNode(v.Index(i))
			if c == nil {
				c = scalar("", "!!str")
			}
			if c.Kind != yaml.ScalarNode {
				n.Style = 0
			}
			n.Content = append(n.Content, c)
		}
		return n
	case reflect.Map:
		if v.Len() == 0 {
			return nil
		}
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range sortedKeys(v) {
			c := effectiveNode(v.MapIndex(k))
			if c == nil {
				c = scalar("", "!!str")
			}
			n.Content = append(n.Content, scalar(fmt.Sprint(k.Interface()), "!!str"), c)
		}
		return n
	case reflect.String:
		if v.Len() == 0 {
			return nil
		}
		return scalar(elideURLPassword(v.String()), "!!str")
	case reflect.Bool:
		return scalar(strconv.FormatBool(v.Bool()), "!!bool")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalar(strconv.FormatInt(v.Int(), 10), "!!int")
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return scalar(strconv.FormatUint(v.Uint(), 10), "!!int")
	case reflect.Float32, reflect.Float64:
		return scalar(strconv.FormatFloat(v.Float(), 'g', -1, 64), "!!float")
	}
	return scalar(fmt.Sprint(v.Interface()), "!!str")
}

func scalar(value, tag string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

func sortedKeys(m reflect.Value) []reflect.Value {
	keys := m.MapKeys()
	slices.SortFunc(keys, func(a, b reflect.Value) int {
		return strings.Compare(fmt.Sprint(a.Interface()), fmt.Sprint(b.Interface()))
	})
	return keys
}

// elideURLPassword replaces the password of a URL's userinfo with "xxxxx",
// and the values of its query (which may carry a token) with "xxxxx": a
// URL with either may be refused by validation, but the printer must not be
// where a secret leaks.
func elideURLPassword(s string) string {
	if !strings.Contains(s, "://") || !strings.ContainsAny(s, "@?") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		u.RawQuery = q.Encode()
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return u.String()
}
