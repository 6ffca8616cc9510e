package loadgen

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// jtlHeader is JMeter 5's default CSV result header
// (jmeter.save.saveservice.* defaults, print_field_names=true).
const jtlHeader = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect\n"

// JTLColumns are the columns of a JTL file, in order.
var JTLColumns = strings.Split(strings.TrimSuffix(jtlHeader, "\n"), ",")

// appendJTL appends r as one JTL row. JMeter's sample starts when the
// request was due, so timeStamp is the due time (epoch ms) and elapsed
// and Latency (first byte) count from it; Connect is the TCP connect time.
// Requests that got no HTTP answer have JMeter's "Non HTTP response code"
// form with the outcome name.
func appendJTL(b []byte, r *result, g *Generator) []byte {
	ms := func(d time.Duration) int64 {
		if d < 0 {
			return 0
		}
		return d.Milliseconds()
	}
	b = strconv.AppendInt(b, r.due.UnixMilli(), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, ms(r.end.Sub(r.due)), 10)
	b = append(b, ',')
	b = appendCSV(b, r.lane.Label)
	b = append(b, ',')
	if r.code != 0 {
		b = strconv.AppendInt(b, int64(r.code), 10)
		b = append(b, ',')
		b = appendCSV(b, http.StatusText(r.code))
	} else {
		b = append(b, "Non HTTP response code: "...)
		b = append(b, r.outcome.String()...)
		b = append(b, ',')
		b = appendCSV(b, "Non HTTP response message: "+failureText(r, g.cfg.MaxLag))
	}
	b = append(b, ",zerodown 1-"...)
	b = strconv.AppendInt(b, int64(r.worker+1), 10)
	b = append(b, ",text,"...)
	b = strconv.AppendBool(b, r.outcome == OK)
	b = append(b, ',')
	if r.outcome == BodyMismatch || (r.code != 0 && r.outcome != OK) {
		b = appendCSV(b, failureText(r, g.cfg.MaxLag))
	}
	b = append(b, ',')
	b = strconv.AppendInt(b, r.bytesIn, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.bytesOut, 10)
	b = append(b, ',')
	threads := g.inflight.Load()
	b = strconv.AppendInt(b, threads, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, threads, 10)
	b = append(b, ',')
	b = appendCSV(b, r.lane.URL)
	b = append(b, ',')
	if !r.ttfb.IsZero() {
		b = strconv.AppendInt(b, ms(r.ttfb.Sub(r.due)), 10)
	} else {
		b = append(b, '0')
	}
	b = append(b, ",0,"...)
	b = strconv.AppendInt(b, ms(r.connect), 10)
	return append(b, '\n')
}

// appendCSV appends s, quoted when it holds a comma, quote or line break.
func appendCSV(b []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// failureText says why a request failed, for samples and JTL files.
func failureText(r *result, maxLag time.Duration) string {
	switch {
	case r.outcome == Dropped:
		return fmt.Sprintf("not started within %s of its due time", maxLag)
	case r.outcome == BodyMismatch && r.lane.ExpectEcho:
		return "body is not the echo of the request body"
	case r.outcome == BodyMismatch:
		return fmt.Sprintf("body does not contain %q", r.lane.ExpectBody)
	case r.err != nil:
		return r.err.Error()
	case r.code != 0:
		return fmt.Sprintf("HTTP %d %s", r.code, http.StatusText(r.code))
	default:
		return r.outcome.String()
	}
}
