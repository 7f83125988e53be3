package audit

import (
	"tollgate.dev/tollgate/internal/request"

	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// referenceJSON is the event's JSON as encoding/json makes it: what AppendJSON
// must reproduce byte for byte.
func referenceJSON(t testing.TB, e Event) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wireEvent{
		Time:       e.Time.UTC().Format(timeLayout),
		DurationMs: durationMs(e.Duration),
		plainEvent: (*plainEvent)(&e),
	}); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	full := fullEvent()
	tests := []struct {
		name string
		ev   Event
	}{
		{name: "full", ev: full},
		{name: "zero", ev: Event{}},
		{name: "minimal", ev: Event{Time: time.Unix(1, 0), Kind: Ingress, Status: 404}},
		{name: "only a port", ev: Event{Client: Endpoint{Port: 7}, Listener: Endpoint{Address: "::1"}}},
		{name: "escapes", ev: Event{
			Path: "/a\"b\\c\n\r\t\b\f\x00\x1f\x7f<>&", UserAgent: "bad \xff utf8 \xe2\x80 and \u2028\u2029 and é and 😀",
			Decision: &request.Decision{Reason: "quote \" and tab \t"}, Auth: &Auth{}, Upstream: Upstream{Address: "x"},
		}},
		{name: "durations", ev: Event{Duration: 1234567 * time.Nanosecond, Sequence: 1 << 63}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.ev.AppendJSON(nil)
			if want := referenceJSON(t, tc.ev); !bytes.Equal(got, want) {
				t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("/path", "agent", "reason", int64(5), 200, uint16(443))
	f.Add("/\xff\x00\"\\", "\u2028", "", int64(-1), 0, uint16(0))
	f.Fuzz(func(t *testing.T, path, ua, reason string, dur int64, status int, port uint16) {
		ev := Event{
			Time: time.Unix(0, dur).UTC(), Duration: time.Duration(dur), Kind: Egress,
			Path: path, UserAgent: ua, Status: status, Client: Endpoint{Address: ua, Port: int(port)},
			Decision: &request.Decision{Reason: reason, Allow: status%2 == 0, DryRun: port%2 == 0},
			Upstream: Upstream{SPIFFEID: reason},
		}
		got := ev.AppendJSON(nil)
		if want := referenceJSON(t, ev); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON:\n got %q\nwant %q", got, want)
		}
		if !json.Valid(got) {
			t.Fatalf("invalid JSON %q", got)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	ev := fullEvent()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
}
