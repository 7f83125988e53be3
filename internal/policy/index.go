package policy

import "strings"

// ruleIndex finds the first matching rule of a group without trying every rule.
// Rules are keyed by the canonical host name (without port) and by the leading
// literal path segments that every request they can match must have; a rule
// that cannot be keyed by host sits under anyHost, one that cannot be keyed by
// path sits at the root of its path trie. A request walks its host's trie and
// the anyHost trie along its own path segments and tries the rules found on the
// way, each list in rule order; the first match overall is the one with the
// lowest rule number, exactly what the linear evaluator returns.
type ruleIndex struct {
	rules   []*rule
	byHost  map[string]*pathNode
	anyHost pathNode
}

// pathNode is one node of a trie of path segments.
type pathNode struct {
	ids  []int32 // rules whose path key ends here, ascending
	kids map[string]*pathNode
}

// maxKeyDepth bounds the trie depth; a longer key is cut, which only widens the
// set of candidate rules.
const maxKeyDepth = 8

func (n *pathNode) add(keys [][]string, id int32) {
	if keys == nil {
		keys = [][]string{nil}
	}
	for _, key := range keys {
		node := n
		for _, seg := range key[:min(len(key), maxKeyDepth)] {
			if node.kids == nil {
				node.kids = map[string]*pathNode{}
			}
			next := node.kids[seg]
			if next == nil {
				next = &pathNode{}
				node.kids[seg] = next
			}
			node = next
		}
		node.ids = appendID(node.ids, id)
	}
}

func appendID(ids []int32, id int32) []int32 {
	if n := len(ids); n > 0 && ids[n-1] == id {
		return ids
	}
	return append(ids, id)
}

func newRuleIndex(rules []*rule) *ruleIndex {
	x := &ruleIndex{rules: rules, byHost: map[string]*pathNode{}}
	for i, r := range rules {
		id := int32(i)
		hosts := ruleKeys(r, aHost)
		var paths [][]string
		for _, k := range ruleKeys(r, aPath) {
			paths = append(paths, splitKey(k))
		}
		if hosts == nil {
			x.anyHost.add(paths, id)
			continue
		}
		for _, h := range hosts {
			n := x.byHost[h]
			if n == nil {
				n = &pathNode{}
				x.byHost[h] = n
			}
			n.add(paths, id)
		}
	}
	return x
}

// splitKey turns a path key ("a/b", see pathKey) into its segments.
func splitKey(k string) []string {
	if k == "" {
		return []string{}
	}
	return strings.Split(k, "/")
}

// pathKey returns the literal segments every path matching the value has, joined
// with '/', and whether the value starts with '/'. literal is the part of the
// value that is matched literally; complete says whether its last segment is
// complete (an exact value) or may continue (a prefix).
func pathKey(literal string, complete bool) (string, bool) {
	if !strings.HasPrefix(literal, "/") {
		return "", false
	}
	segs := strings.Split(literal[1:], "/")
	if !complete {
		segs = segs[:len(segs)-1]
	}
	return strings.Join(segs, "/"), true
}

// ruleKeys returns the keys of attribute a that every request matching r has, or
// nil when r cannot be keyed by a: every to entry must carry a keyed positive
// matcher for a.
func ruleKeys(r *rule, a attr) []string {
	if len(r.to) == 0 {
		return nil
	}
	var keys []string
	for _, entry := range r.to {
		found := false
		for i := range entry {
			m := &entry[i]
			if m.attr == a && !m.neg && m.keyed {
				for _, k := range m.keys {
					keys = appendKey(keys, k)
				}
				found = true
				break
			}
		}
		if !found {
			return nil
		}
	}
	return keys
}

// first returns the first rule that matches, or nil.
func (x *ruleIndex) first(c *evalCtx) *rule {
	if len(x.rules) == 0 {
		return nil
	}
	best := int32(len(x.rules))
	if len(x.byHost) > 0 && c.r.Host != "" {
		// Request hosts are canonical (request.ParseAuthority), as the keys are.
		if n := x.byHost[c.r.Host]; n != nil {
			best = n.first(x.rules, c, best)
		}
	}
	if x.anyHost.ids != nil || x.anyHost.kids != nil {
		best = x.anyHost.first(x.rules, c, best)
	}
	if best < int32(len(x.rules)) {
		return x.rules[best]
	}
	return nil
}

// first walks the trie along the request's path segments.
func (n *pathNode) first(rules []*rule, c *evalCtx, best int32) int32 {
	best = firstIn(rules, n.ids, c, best)
	p := c.r.Path
	if !strings.HasPrefix(p, "/") {
		return best
	}
	p = p[1:]
	for depth, more := 0, true; more && n.kids != nil && depth < maxKeyDepth; depth++ {
		seg := p
		if i := strings.IndexByte(p, '/'); i >= 0 {
			seg, p = p[:i], p[i+1:]
		} else {
			more = false
		}
		if n = n.kids[seg]; n == nil {
			break
		}
		best = firstIn(rules, n.ids, c, best)
	}
	return best
}

// firstIn returns the lowest id in ids below best whose rule matches, else best.
func firstIn(rules []*rule, ids []int32, c *evalCtx, best int32) int32 {
	for _, id := range ids {
		if id >= best {
			break
		}
		if rules[id].match(c) {
			return id
		}
	}
	return best
}

// linearFirst is the plain evaluator the index is tested against.
func linearFirst(rules []*rule, c *evalCtx) *rule {
	for _, r := range rules {
		if r.match(c) {
			return r
		}
	}
	return nil
}
