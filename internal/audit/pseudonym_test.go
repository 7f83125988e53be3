package audit

import (
	"bytes"
	"strings"
	"testing"
)

func TestPseudonymize(t *testing.T) {
	key := bytes.Repeat([]byte("k"), 32)
	p, err := NewPseudonymize(key, []string{"client.address", "auth.subject", "sourcePrincipal"})
	if err != nil {
		t.Fatal(err)
	}
	sink := &collectSink{}
	l, err := New(Config{Sinks: []Sink{sink}, Pseudonymize: p})
	if err != nil {
		t.Fatal(err)
	}
	auth := &Auth{Principal: "https://idp/alice", Issuer: "https://idp", Subject: "alice"}
	l.Record(&Event{RequestID: "1", Client: Endpoint{Address: "203.0.113.9", Port: 1}, Auth: auth, SourcePrincipal: "spiffe://td/ns/a/sa/b"})
	l.Record(&Event{RequestID: "2", Client: Endpoint{Address: "203.0.113.9", Port: 2}, Auth: &Auth{Subject: "alice"}})
	l.Record(&Event{RequestID: "3", Client: Endpoint{Address: "198.51.100.1", Port: 3}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(sink.lines, "")
	for _, secret := range []string{"203.0.113.9", `"alice"`, "spiffe://td/ns/a/sa/b"} {
		if strings.Contains(out, secret) {
			t.Errorf("%s reached the sink", secret)
		}
	}
	evs := decodeLines(t, out)
	if evs[0].Client.Address != evs[1].Client.Address || evs[0].Client.Address == evs[2].Client.Address {
		t.Errorf("pseudonyms don't correlate: %q %q %q", evs[0].Client.Address, evs[1].Client.Address, evs[2].Client.Address)
	}
	if !strings.HasPrefix(evs[0].Client.Address, "hmac-sha256:") || len(evs[0].Client.Address) != len("hmac-sha256:")+32 {
		t.Errorf("pseudonym %q", evs[0].Client.Address)
	}
	if evs[0].Auth.Subject != evs[1].Auth.Subject || evs[0].Auth.Principal != "https://idp/alice" {
		t.Errorf("auth %+v / %+v: subject hashed alike, principal (not configured) kept", evs[0].Auth, evs[1].Auth)
	}
	if auth.Subject != "alice" {
		t.Error("the caller's Auth was changed, not copied")
	}
	// Another key, another pseudonym; another field, another pseudonym.
	other, _ := NewPseudonymize(bytes.Repeat([]byte("o"), 32), []string{"client.address"})
	if other.Hash("client.address", "203.0.113.9") == evs[0].Client.Address {
		t.Error("the pseudonym does not depend on the key")
	}
	if p.Hash("auth.subject", "203.0.113.9") == evs[0].Client.Address {
		t.Error("the pseudonym does not depend on the field")
	}
}

func TestNewPseudonymizeErrors(t *testing.T) {
	key := bytes.Repeat([]byte("k"), 32)
	for _, tt := range []struct {
		key    []byte
		fields []string
		want   string
	}{
		{key[:16], []string{"client.address"}, "at least 32"},
		{key, nil, "which fields"},
		{key, []string{"path"}, `cannot pseudonymize "path"`},
	} {
		if _, err := NewPseudonymize(tt.key, tt.fields); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewPseudonymize(%d bytes, %v): %v, want %q", len(tt.key), tt.fields, err, tt.want)
		}
	}
}
