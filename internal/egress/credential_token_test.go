package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tollgate.dev/tollgate/internal/testkit"
)

// applyToken runs Apply and returns the Authorization it set.
func applyToken(t *testing.T, c *Credentials) (string, error) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer workload-own"}}
	err := c.Apply(t.Context(), h)
	if err != nil && h.Get("Authorization") != "" {
		t.Errorf("Apply failed (%v) but left Authorization %q", err, h.Get("Authorization"))
	}
	return h.Get("Authorization"), err
}

// The token is fetched again only once its refresh time (expiry minus
// RefreshBefore) has come; the clock is synctest's.
func TestCredentialsOAuth2RefreshTime(t *testing.T) {
	tests := []struct {
		name          string
		expiresIn     int
		refreshBefore time.Duration
		wantRefreshAt time.Duration // after the first fetch
	}{
		{name: "refresh before expiry", expiresIn: 60, refreshBefore: 10 * time.Second, wantRefreshAt: 50 * time.Second},
		{name: "default refresh before", expiresIn: 3600, wantRefreshAt: 3600*time.Second - DefaultRefreshBefore},
		{name: "token shorter-lived than refresh before", expiresIn: 20, refreshBefore: 30 * time.Second, wantRefreshAt: 10 * time.Second},
		{name: "no expires_in", expiresIn: 0, wantRefreshAt: DefaultTokenLifetime - DefaultRefreshBefore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ts := newTokenServer("gw", "s3cr3t", tt.expiresIn)
				c := oauthCreds(t, ts, func(o *OAuth2Options) { o.RefreshBefore = tt.refreshBefore })
				start := time.Now()
				check := func(at time.Duration, want string) {
					t.Helper()
					time.Sleep(start.Add(at).Sub(time.Now()))
					got, err := applyToken(t, c)
					if err != nil || got != want {
						t.Fatalf("at %v: Authorization %q, error %v; want %q", at, got, err, want)
					}
				}
				check(0, "Bearer tok-1")
				check(tt.wantRefreshAt-time.Millisecond, "Bearer tok-1")
				check(tt.wantRefreshAt, "Bearer tok-2")
				check(tt.wantRefreshAt+time.Second, "Bearer tok-2")
				if n := ts.fetches.Load(); n != 2 {
					t.Errorf("%d token requests, want 2", n)
				}
			})
		})
	}
}

// A token endpoint that fails makes Apply fail closed, with an error that
// carries no secret; a cached token is not used past its refresh time.
func TestCredentialsOAuth2FailsClosed(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(ts *tokenServer)
		wantErr   string
		wantFetch int32
	}{
		{name: "server error", setup: func(ts *tokenServer) { ts.fail.Store(true) }, wantErr: "token endpoint answered 500 Internal Server Error, error \"server_error\""},
		{name: "wrong client secret", setup: func(ts *tokenServer) {
			other := "rotated-elsewhere"
			ts.secret.Store(&other)
		}, wantErr: "token endpoint answered 401 Unauthorized, error \"invalid_client\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ts := newTokenServer("gw", "s3cr3t", 60)
				c := oauthCreds(t, ts, func(o *OAuth2Options) { o.RefreshBefore = 10 * time.Second })
				if got, err := applyToken(t, c); err != nil || got != "Bearer tok-1" {
					t.Fatalf("first Apply: %q, %v", got, err)
				}
				tt.setup(ts)
				// Before the refresh time the cached token serves.
				time.Sleep(49 * time.Second)
				if got, err := applyToken(t, c); err != nil || got != "Bearer tok-1" {
					t.Fatalf("at 49s: %q, %v; want the cached token", got, err)
				}
				// From the refresh time on, and past expiry, nothing is sent.
				for _, wait := range []time.Duration{time.Second, 11 * time.Second} {
					time.Sleep(wait)
					_, err := applyToken(t, c)
					var ce *CredentialError
					switch {
					case err == nil:
						t.Fatal("Apply succeeded with a failing token endpoint")
					case !errors.Is(err, ErrCredentialUnavailable) || !errors.As(err, &ce):
						t.Fatalf("error %v (%T) does not match ErrCredentialUnavailable and *CredentialError", err, err)
					case ce.Header != "Authorization" || !strings.Contains(err.Error(), tt.wantErr):
						t.Fatalf("error %q (header %q), want it to name Authorization and contain %q", err, ce.Header, tt.wantErr)
					case strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "tok-1"):
						t.Fatalf("error %q carries a secret", err)
					}
				}
			})
		})
	}
}

// Nothing listens at the token endpoint: Apply fails closed, within the
// timeout, on the real network.
func TestCredentialsOAuth2EndpointDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ts := newTokenServer("gw", "s3cr3t", 60)
	c := oauthCreds(t, ts, func(o *OAuth2Options) {
		o.TokenURL = "http://" + addr + "/token"
		o.HTTPClient = nil
		o.Timeout = 5 * time.Second
	})
	start := time.Now()
	_, err = applyToken(t, c)
	if !errors.Is(err, ErrCredentialUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %v, want a CredentialError saying connection refused", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Apply took %v, more than the timeout", d)
	}
}

// A waiter whose request goes away stops waiting; when the request that
// runs the fetch goes away, a waiter fetches for itself.
func TestCredentialsOAuth2Waiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := newTokenServer("gw", "s3cr3t", 60)
		ts.release = make(chan struct{})
		c := oauthCreds(t, ts, nil)

		leaderCtx, cancelLeader := context.WithCancel(t.Context())
		waiterCtx, cancelWaiter := context.WithCancel(t.Context())
		var leaderErr, waiterErr, patientErr error
		var patient http.Header
		var wg sync.WaitGroup
		wg.Go(func() { leaderErr = c.Apply(leaderCtx, http.Header{}) })
		synctest.Wait() // the leader's fetch is held by the server
		wg.Go(func() { waiterErr = c.Apply(waiterCtx, http.Header{}) })
		wg.Go(func() {
			patient = http.Header{}
			patientErr = c.Apply(t.Context(), patient)
		})
		synctest.Wait()
		cancelWaiter()
		synctest.Wait()
		if !errors.Is(waiterErr, context.Canceled) || !errors.Is(waiterErr, ErrCredentialUnavailable) {
			t.Fatalf("cancelled waiter: error %v, want context.Canceled in a CredentialError", waiterErr)
		}
		cancelLeader()
		synctest.Wait() // the patient waiter now runs a fetch of its own
		close(ts.release)
		wg.Wait()
		if !errors.Is(leaderErr, context.Canceled) {
			t.Errorf("leader: error %v, want context.Canceled", leaderErr)
		}
		if patientErr != nil || patient.Get("Authorization") != "Bearer tok-2" {
			t.Errorf("patient waiter: Authorization %q, error %v; want Bearer tok-2", patient.Get("Authorization"), patientErr)
		}
	})
}

// A rotated client secret is used for the next token request.
func TestCredentialsOAuth2ClientSecretRotation(t *testing.T) {
	ts := newTokenServer("gw", "old-secret", 1) // refreshed every half second
	reloads := make(chan reloadReport, 16)
	secretFile := writeSecretFile(t, t.TempDir(), "secret", "old-secret\n")
	c := newCreds(t, CredentialOptions{
		OAuth2: &OAuth2Options{
			TokenURL: "https://idp.test/token", ClientID: "gw", ClientSecretFile: secretFile,
			HTTPClient: &http.Client{Transport: handlerTransport{ts}},
		},
		PollInterval: 5 * time.Millisecond,
		Settle:       5 * time.Millisecond,
		OnReload:     func(f string, err error) { reloads <- reloadReport{f, err} },
	})
	if got, err := applyToken(t, c); err != nil || got != "Bearer tok-1" {
		t.Fatalf("first Apply: %q, %v", got, err)
	}
	newSecret := "new-secret"
	ts.secret.Store(&newSecret)
	testkit.WriteFileAtomic(t, secretFile, []byte("new-secret\n"))
	if err := waitReload(t, reloads, secretFile); err != nil {
		t.Fatal(err)
	}
	// An emptied secret file keeps the last good secret.
	testkit.WriteFileAtomic(t, secretFile, nil)
	if err := waitReload(t, reloads, secretFile); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("reload of an empty secret: %v, want an error saying it is empty", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := applyToken(t, c)
		if err == nil && got != "Bearer tok-1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token with the new secret within 10s: %q, %v", got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close is idempotent; a token in hand still serves, a fetch after Close
// fails closed.
func TestCredentialsClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := newTokenServer("gw", "s3cr3t", 60)
		c := oauthCreds(t, ts, func(o *OAuth2Options) { o.RefreshBefore = 10 * time.Second })
		if got, err := applyToken(t, c); err != nil || got != "Bearer tok-1" {
			t.Fatalf("first Apply: %q, %v", got, err)
		}
		c.Close()
		c.Close()
		if got, err := applyToken(t, c); err != nil || got != "Bearer tok-1" {
			t.Fatalf("Apply after Close: %q, %v; want the cached token", got, err)
		}
		time.Sleep(time.Minute)
		if _, err := applyToken(t, c); !errors.Is(err, ErrCredentialUnavailable) || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("Apply after Close needing a fetch: %v, want a CredentialError saying closed", err)
		}
		if n := ts.fetches.Load(); n != 1 {
			t.Errorf("%d token requests, want 1", n)
		}
	})
}
