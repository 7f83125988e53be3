package exchange

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tollgate.dev/tollgate/internal/request"
)

// queryDecider records the query it was asked to judge; it reads the query
// (UsesQuery) unless blind.
type queryDecider struct {
	blind bool
	seen  *map[string][]string
}

func (a queryDecider) UsesQuery() bool { return !a.blind }

func (a queryDecider) Authorize(r *request.Request) request.Decision {
	*a.seen = r.Query
	return request.Decision{Allow: true}
}

// TestDecodeQuery: a query decoded ahead of Authorize (for the JWT
// extraction) is the map the policy judges, decoded once; one that can't be
// decoded is refused by Authorize all the same (400); an authorizer that
// reads no query gets none decoded; and a new target forgets the old query.
func TestDecodeQuery(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rawQuery   string
		blind      bool
		wantQuery  map[string][]string
		wantStatus int
	}{
		{name: "decoded once", rawQuery: "a=1&b=%32&a=3", wantQuery: map[string][]string{"a": {"1", "3"}, "b": {"2"}}, wantStatus: 200},
		{name: "semicolon", rawQuery: "a=1;b=2", wantStatus: 400},
		{name: "bad escape", rawQuery: "a=%zz", wantStatus: 400},
		{name: "policy reads no query", rawQuery: "a=1;b=2", blind: true, wantStatus: 200},
		{name: "no query", wantStatus: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, _, w := begin(New(Options{Name: "ingress"}), httptest.NewRequest("GET", "/x", nil), "127.0.0.1:1")
			x.SetTarget("/old", "old=1")
			x.DecodeQuery(queryDecider{seen: new(map[string][]string)})
			x.SetTarget("/x", tc.rawQuery)
			var seen map[string][]string
			a := queryDecider{blind: tc.blind, seen: &seen}
			x.DecodeQuery(a)
			if diff := cmp.Diff(tc.wantQuery, x.Req.Query); diff != "" {
				t.Fatalf("query after DecodeQuery (-want +got):\n%s", diff)
			}
			decoded := x.Req.Query
			ok := x.Authorize(a)
			x.Finish()
			if w.Code != tc.wantStatus || ok != (tc.wantStatus == 200) {
				t.Fatalf("Authorize = %v, status %d; want status %d", ok, w.Code, tc.wantStatus)
			}
			if ok && tc.wantQuery != nil {
				// The very map, not a second decoding.
				seen["marker"] = nil
				if _, same := decoded["marker"]; !same {
					t.Errorf("policy judged another decoding of the query")
				}
			}
			if !ok && !strings.Contains(w.Body.String(), "invalid query") {
				t.Errorf("refusal body %q, want invalid query", w.Body.String())
			}
		})
	}
}

// TestSetUser: the request description gets its own copy of the identity
// (the verified-token cache shares the original across requests), and the
// event its principal, without an allocation.
func TestSetUser(t *testing.T) {
	x, _, _ := begin(New(Options{Name: "ingress"}), httptest.NewRequest("GET", "/x", nil), "127.0.0.1:1")
	shared := &request.Auth{Issuer: "https://issuer.test", Subject: "alice", Principal: "https://issuer.test/alice"}
	if n := testing.AllocsPerRun(100, func() { x.SetUser(shared) }); n != 0 {
		t.Errorf("SetUser allocates %v times, want 0", n)
	}
	x.Req.Auth.Subject = "mallory"
	if shared.Subject != "alice" {
		t.Errorf("changing the request's identity changed the shared one: %+v", shared)
	}
	if ev := x.Event.Auth; ev == nil || ev.Principal != shared.Principal || ev.Subject != "alice" {
		t.Errorf("event auth %+v", ev)
	}
	x.Finish()
}
