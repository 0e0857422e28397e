package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"

	"github.com/citywatch/citywatch/wire"
)

// ClassifyDial sorts a failed TCP connect to a camera: refused means the
// host is up but nothing listens (wrong port, RTSP service crashed);
// everything that means "no answer at all" is unreachable (cable, switch,
// power, routing).
func ClassifyDial(err error, timeout time.Duration) (wire.Reason, string) {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return wire.ReasonRefused, "TCP connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return wire.ReasonUnreachable, "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return wire.ReasonUnreachable, "network unreachable"
	case errors.As(err, &dnsErr):
		return wire.ReasonUnreachable, "host name does not resolve: " + dnsErr.Err
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return wire.ReasonUnreachable, fmt.Sprintf("no answer to TCP connect within %v", timeout)
	case errors.Is(err, context.Canceled):
		return wire.ReasonProbeError, "cancelled"
	}
	return wire.ReasonProbeError, "TCP connect: " + err.Error()
}

// ClassifyRTSP sorts a failure after the TCP connect to a camera succeeded.
// Live video uses it too, so a stream fails with the reasons a probe gives.
func ClassifyRTSP(ctx context.Context, err error, timeout time.Duration) (wire.Reason, string) {
	var status liberrors.ErrClientBadStatusCode
	var authSetup liberrors.ErrClientAuthSetup
	var netErr net.Error
	switch {
	case ctx.Err() != nil:
		return wire.ReasonProbeError, "cancelled"
	case errors.As(err, &status):
		return classifyStatus(status.Code)
	case errors.As(err, &authSetup):
		// The camera asks for an authentication scheme we cannot answer.
		return wire.ReasonAuthFailed, err.Error()
	case errors.As(err, new(liberrors.ErrClientRequestTimedOut)),
		errors.As(err, &netErr) && netErr.Timeout():
		return wire.ReasonTimeout, fmt.Sprintf("connected, but RTSP did not answer within %v", timeout)
	case errors.As(err, new(liberrors.ErrClientTCPTimeout)):
		return wire.ReasonNoStream, fmt.Sprintf("stream stalled: no data for %v", timeout)
	}
	return wire.ReasonProbeError, "RTSP: " + err.Error()
}

func classifyStatus(code base.StatusCode) (wire.Reason, string) {
	detail := fmt.Sprintf("RTSP %d %s", code, base.StatusMessages[code])
	switch code {
	case base.StatusUnauthorized, base.StatusForbidden:
		// gortsplib has already retried with the URL's credentials, so a
		// 401 here means they are wrong or missing.
		return wire.ReasonAuthFailed, detail
	case base.StatusNotFound:
		return wire.ReasonNoStream, detail
	}
	return wire.ReasonProbeError, detail
}
