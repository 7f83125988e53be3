package identity_test

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"tollgate.dev/tollgate/internal/identity"
)

func ExampleParseMatcher() {
	m, err := identity.ParseMatcher([]string{
		"spiffe://example.org/ns/web/sa/api", // exactly this workload
		"spiffe://example.org/ns/pay/*",      // anything below /ns/pay/
		"spiffe://partner.example",           // anything in a federated trust domain
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, id := range []string{
		"spiffe://example.org/ns/web/sa/api",
		"spiffe://example.org/ns/pay/sa/ledger",
		"spiffe://example.org/ns/payments/sa/ledger",
		"spiffe://partner.example/billing",
	} {
		fmt.Println(id, m.Match(spiffeid.RequireFromString(id)))
	}

	_, err = identity.ParseMatcher([]string{"spiffe://example.org/ns/*/sa/api"})
	fmt.Println(err)
	// Output:
	// spiffe://example.org/ns/web/sa/api true
	// spiffe://example.org/ns/pay/sa/ledger true
	// spiffe://example.org/ns/payments/sa/ledger false
	// spiffe://partner.example/billing true
	// identity: invalid SPIFFE ID pattern: pattern 0 "spiffe://example.org/ns/*/sa/api": "*" is only allowed as the whole last path segment ("/*")
}
