package exchange

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The header lists are documented for operators (docs/configuration.md, "What
// the gateway removes"): a header the code strips but the doc does not name
// surprises an app that needs it, and one the doc names but the code keeps is
// a promise of protection that isn't there. The two must name the same set.
func TestDocumentedHeaderListsMatchTheCode(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "### What the gateway removes")
	if start < 0 {
		t.Fatal(`docs/configuration.md has no "What the gateway removes" section`)
	}
	section := doc[start:]
	if end := strings.Index(section[4:], "\n#"); end >= 0 {
		section = section[:end+4]
	}
	// Header names are the backticked words that look like one; the query
	// parameters and prefixes are compared separately.
	var documented []string
	for _, m := range regexp.MustCompile("`([A-Z][a-z0-9]*(?:-[A-Z][a-z0-9]*)*)`").FindAllStringSubmatch(section, -1) {
		documented = append(documented, strings.ToLower(m[1]))
	}
	for _, p := range methodOverrideParams {
		if !strings.Contains(section, "`"+p+"`") {
			t.Errorf("query parameter %s is stripped but not documented", p)
		}
	}
	var code []string
	for _, list := range [][]string{forwardingHeaders, clientIPHeaders, alwaysStripped, methodOverrideHeaders} {
		for _, h := range list {
			code = append(code, strings.ToLower(h))
		}
	}
	code = append(code, strings.ToLower(HeaderRequestID))
	for _, p := range alwaysStrippedPrefixes {
		if !strings.Contains(section, "`"+p+"`") {
			t.Errorf("prefix %s is stripped but not documented", p)
		}
	}
	slices.Sort(documented)
	documented = slices.Compact(documented)
	slices.Sort(code)
	code = slices.Compact(code)
	for _, h := range code {
		if _, ok := slices.BinarySearch(documented, h); !ok {
			t.Errorf("%s is stripped but not documented", h)
		}
	}
	byPrefix := func(h string) bool {
		for _, p := range alwaysStrippedPrefixes {
			if strings.HasPrefix(h, strings.ToLower(p)) {
				return true
			}
		}
		return false
	}
	for _, h := range documented {
		if _, ok := slices.BinarySearch(code, h); !ok && !byPrefix(h) {
			t.Errorf("%s is documented as removed, but the code keeps it", h)
		}
	}
}
