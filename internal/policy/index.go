package policy

// ruleIndex finds the first matching rule of a group without trying every rule.
// Rules are keyed by the host (lower case, without port) and the first path
// segment that every request they can match must have; a rule that cannot be
// keyed lands in a "rest" list. A request then tries at most four short lists,
// each in rule order, and the first match overall is the one with the lowest
// rule number, exactly what the linear evaluator returns.
type ruleIndex struct {
	rules   []*rule
	byHost  map[string]*segIndex
	anyHost segIndex
}

type segIndex struct {
	bySeg map[string][]int32
	rest  []int32
}

func (s *segIndex) add(segs []string, id int32) {
	if segs == nil {
		s.rest = appendID(s.rest, id)
		return
	}
	if s.bySeg == nil {
		s.bySeg = map[string][]int32{}
	}
	for _, k := range segs {
		s.bySeg[k] = appendID(s.bySeg[k], id)
	}
}

func appendID(ids []int32, id int32) []int32 {
	if n := len(ids); n > 0 && ids[n-1] == id {
		return ids
	}
	return append(ids, id)
}

func newRuleIndex(rules []*rule) *ruleIndex {
	x := &ruleIndex{rules: rules, byHost: map[string]*segIndex{}}
	for i, r := range rules {
		id := int32(i)
		hosts := ruleKeys(r, aHost)
		segs := ruleKeys(r, aPath)
		if hosts == nil {
			x.anyHost.add(segs, id)
			continue
		}
		for _, h := range hosts {
			s := x.byHost[h]
			if s == nil {
				s = &segIndex{}
				x.byHost[h] = s
			}
			s.add(segs, id)
		}
	}
	return x
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
	seg, hasSeg := firstSegment(c.r.Path)
	if len(x.byHost) > 0 && c.r.Host != "" {
		var buf [128]byte
		if s := x.byHost[string(hostKey(buf[:0], c.r.Host))]; s != nil {
			best = s.first(x.rules, c, seg, hasSeg, best)
		}
	}
	best = x.anyHost.first(x.rules, c, seg, hasSeg, best)
	if best < int32(len(x.rules)) {
		return x.rules[best]
	}
	return nil
}

func (s *segIndex) first(rules []*rule, c *evalCtx, seg string, hasSeg bool, best int32) int32 {
	if hasSeg && s.bySeg != nil {
		best = firstIn(rules, s.bySeg[seg], c, best)
	}
	return firstIn(rules, s.rest, c, best)
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
