package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"

	"tollgate.dev/tollgate/internal/audit"
	"tollgate.dev/tollgate/internal/identity"
)

// writeError sends the small JSON error body every client error uses. msg is a
// fixed, safe text: never an error's text, which may carry addresses or names
// of internal services.
func writeError(w http.ResponseWriter, status int, msg, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// Hand-built: msg and requestID are from fixed sets of safe characters, but
	// quote them anyway.
	w.Write([]byte(`{"error":` + strconv.Quote(msg) + `,"requestId":` + strconv.Quote(requestID) + "}\n"))
}

// classify maps an upstream round-trip error to a status and an error kind.
func classify(ctx context.Context, err error) (int, audit.ErrorKind) {
	var (
		peerErr  *identity.PeerError
		verErr   *tls.CertificateVerificationError
		alertErr tls.AlertError
		recErr   tls.RecordHeaderError
		unkAuth  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		certErr  x509.CertificateInvalidError
		opErr    *net.OpError
		netErr   net.Error
	)
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return 499, audit.ErrClientCanceled
	case errors.As(err, &peerErr), errors.As(err, &verErr), errors.As(err, &alertErr),
		errors.As(err, &recErr), errors.As(err, &unkAuth), errors.As(err, &hostErr), errors.As(err, &certErr):
		return http.StatusBadGateway, audit.ErrUpstreamTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return http.StatusGatewayTimeout, audit.ErrTimeout
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return http.StatusServiceUnavailable, audit.ErrUpstreamUnreachable
	case errors.As(err, new(*net.DNSError)):
		return http.StatusServiceUnavailable, audit.ErrUpstreamUnreachable
	default:
		return http.StatusBadGateway, audit.ErrUpstreamProtocol
	}
}

// statusText is the safe message for each status the gateway itself answers.
func statusText(kind audit.ErrorKind) string {
	switch kind {
	case audit.ErrUpstreamTLS:
		return "upstream identity could not be verified"
	case audit.ErrUpstreamUnreachable:
		return "upstream unavailable"
	case audit.ErrTimeout:
		return "upstream timed out"
	case audit.ErrNoRoute:
		return "no route"
	case audit.ErrBadRequest:
		return "bad request"
	default:
		return "bad gateway"
	}
}
