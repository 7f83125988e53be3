package exchange

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

// HeaderRequestID is the header that carries the request id to the upstream
// and back to the client. A client can't send its own: only a trusted proxy's
// is kept.
const HeaderRequestID = "X-Request-Id"

// HeaderError names the reason of a refusal in one short token, for clients
// that only show headers (as Smokescreen's X-Smokescreen-Error does).
const HeaderError = "X-Tollgate-Error"

// WriteError sends the small JSON error body every client error uses. msg is a
// fixed, safe text: never an error's text, which may carry addresses or names
// of internal services.
func WriteError(w http.ResponseWriter, status int, msg, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(ErrorBody(msg, requestID))
}

// ErrorBody is the JSON body of an error answer.
func ErrorBody(msg, requestID string) []byte {
	// Hand-built: msg and requestID are from fixed sets of safe characters, but
	// quote them anyway.
	return []byte(`{"error":` + strconv.Quote(msg) + `,"requestId":` + strconv.Quote(requestID) + "}\n")
}

// Classify maps an upstream round-trip error to a status and an error kind.
func Classify(ctx context.Context, err error) (int, audit.ErrorKind) {
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

// StatusText is the safe message for each refusal the gateway itself answers.
func StatusText(kind audit.ErrorKind) string {
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

// isUpstreamError reports whether kind is a failure of the upstream exchange (as
// opposed to the gateway refusing the client), for the upstream-errors metric.
func isUpstreamError(kind audit.ErrorKind) bool {
	switch kind {
	case audit.ErrUpstreamTLS, audit.ErrUpstreamUnreachable, audit.ErrUpstreamProtocol, audit.ErrTimeout:
		return true
	}
	return false
}
