package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Outcome is what became of one request. Every request gets exactly one.
type Outcome uint8

// The outcomes, in the order reports list them. Everything but OK is a
// failure.
const (
	// OK: a 2xx answer whose whole body arrived and passed the body check.
	OK Outcome = iota
	// Refused: the connection was refused (ECONNREFUSED).
	Refused
	// Reset: the peer reset the connection (ECONNRESET, EPIPE, ECONNABORTED),
	// before or during the answer.
	Reset
	// EOF: the connection was closed before the first byte of an answer.
	EOF
	// Timeout: no complete answer within the request timeout.
	Timeout
	// HTTP5xx: the answer's status was 5xx (see the per-code counts).
	HTTP5xx
	// HTTP4xx: the answer's status was 4xx.
	HTTP4xx
	// HTTP3xx: the answer's status was 3xx or 1xx (redirects are not followed).
	HTTP3xx
	// BodyMismatch: a 2xx answer whose body failed the check.
	BodyMismatch
	// Truncated: the answer started but its body did not arrive whole.
	Truncated
	// Dropped: the request could not start within Config.MaxLag of its due
	// time (open model only). It was never sent.
	Dropped
	// Aborted: the request was in flight when Stop's context ended.
	Aborted
	// Error: any other failure, such as a malformed answer, a DNS or TLS
	// error.
	Error

	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	OK:           "ok",
	Refused:      "refused",
	Reset:        "reset",
	EOF:          "eof",
	Timeout:      "timeout",
	HTTP5xx:      "http_5xx",
	HTTP4xx:      "http_4xx",
	HTTP3xx:      "http_3xx",
	BodyMismatch: "body_mismatch",
	Truncated:    "truncated",
	Dropped:      "dropped",
	Aborted:      "aborted",
	Error:        "error",
}

// String is the outcome's name as it appears in reports: "ok", "refused",
// "http_5xx", ...
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Failed reports whether the outcome counts as a failed request.
func (o Outcome) Failed() bool { return o != OK }

// Outcomes lists every outcome in report order.
func Outcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

// errAborted is the cancellation cause of requests cut short by Stop.
var errAborted = errors.New("load stopped: request aborted")

// statusOutcome classifies a complete answer by its status code.
func statusOutcome(code int) Outcome {
	switch {
	case code >= 200 && code <= 299:
		return OK
	case code >= 500:
		return HTTP5xx
	case code >= 400:
		return HTTP4xx
	default:
		return HTTP3xx
	}
}

// classifyErr classifies a transport error with errors.Is/As only. inBody
// says the answer's status line and headers had arrived: a connection that
// ends then is a truncated answer, not an unanswered request. sawByte says
// at least one byte of the answer had arrived; gotConn that a connection
// was established. ctx is the request's context (nil when there is none).
func classifyErr(ctx context.Context, err error, inBody, sawByte, gotConn bool) Outcome {
	if ctx != nil && errors.Is(context.Cause(ctx), errAborted) {
		return Aborted
	}
	if errors.Is(err, errAborted) {
		return Aborted
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return Timeout
	}
	if isRefused(err) {
		return Refused
	}
	if isReset(err) {
		return Reset
	}
	if inBody {
		// io.ErrUnexpectedEOF (short Content-Length), io.EOF, a broken
		// chunked encoding: the answer started and did not finish.
		return Truncated
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return EOF
	}
	if gotConn && !sawByte && !isDNS(err) {
		// net/http reports a server that closed a reused connection before
		// answering as an unexported sentinel ("server closed idle
		// connection") that wraps nothing; httptrace says a connection was
		// there and no byte of an answer came back on it.
		return EOF
	}
	return Error
}

func isDNS(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de)
}

// isReset reports a connection torn down by the peer.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || isResetOS(err)
}

// isRefused reports a connection attempt the peer refused.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || isRefusedOS(err)
}
