package audit_test

import (
	"tollgate.dev/tollgate/internal/request"

	"fmt"
	"os"
	"time"

	"tollgate.dev/tollgate/internal/audit"
)

func ExampleRedactQuery() {
	fmt.Println(audit.RedactQuery("code=4/0AX&state=xyz&page=2", nil))
	// Output: code=REDACTED&state=REDACTED&page=2
}

func ExampleLogger() {
	l, err := audit.New(audit.Config{Instance: "gw-eu-1", Sinks: []audit.Sink{audit.NewWriterSink(os.Stdout)}})
	if err != nil {
		fmt.Println(err)
		return
	}
	l.Record(&audit.Event{
		Time:      time.Date(2026, 9, 24, 10, 13, 20, 123e6, time.UTC),
		ID:        "01925f6e-3a7b-7c00-8000-000000000001",
		RequestID: "req-7f3a9c0e2b",
		Kind:      audit.Egress,
		Method:    "GET",
		Host:      "api.example.com",
		Path:      "/v1/charges",
		Query:     "limit=10&api_key=sk_live_123",
		Status:    200,
		Duration:  184 * time.Millisecond,
		Decision:  &request.Decision{Allow: true, Action: "ALLOW", Policy: "egress/stripe", Rule: 0},
	})
	l.Close() // flushes
	// Output:
	// {"time":"2026-09-24T10:13:20.123Z","durationMs":184,"id":"01925f6e-3a7b-7c00-8000-000000000001","seq":1,"requestId":"req-7f3a9c0e2b","instance":"gw-eu-1","kind":"egress","host":"api.example.com","method":"GET","path":"/v1/charges","query":"limit=10&api_key=REDACTED","status":200,"bytesIn":0,"bytesOut":0,"decision":{"allow":true,"action":"ALLOW","policy":"egress/stripe","rule":0}}
}
