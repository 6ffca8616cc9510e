package sampleapp

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// RequestIDHeader names the header whose value a POST is logged under.
const RequestIDHeader = "X-Request-Id"

// requestLog records that a POST started executing, one line per
// execution: the quoted request id, then the address the app listens on,
// its version and its pid. A proxy that replays a POST shows as two lines
// with one id, whichever host or process ran them.
type requestLog struct {
	w io.Writer
	// tag is the rest of every line, the same for the whole process.
	tag string
}

// openRequestLog opens path for appending. O_APPEND makes each line one
// atomic append, so the apps of several hosts, and the new process of a
// restarted app, can share one file without losing or mixing lines.
func openRequestLog(path string, addr net.Addr, version string) (*requestLog, *os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("request log: %w", err)
	}
	tag := fmt.Sprintf(" %s %s %d\n", addr, version, os.Getpid())
	return &requestLog{w: f, tag: tag}, f, nil
}

// record appends id's line in one write.
func (l *requestLog) record(id string) error {
	_, err := io.WriteString(l.w, strconv.Quote(id)+l.tag)
	return err
}

// RequestLogEntry is one line of a request log.
type RequestLogEntry struct {
	ID, Addr, Version string
	PID               int
}

// ParseRequestLog reads a request log's lines.
func ParseRequestLog(data string) ([]RequestLogEntry, error) {
	var out []RequestLogEntry
	for i, line := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		if line == "" {
			continue
		}
		var e RequestLogEntry
		if _, err := fmt.Sscanf(line, "%q %s %s %d", &e.ID, &e.Addr, &e.Version, &e.PID); err != nil {
			return nil, fmt.Errorf("request log line %d %q: %w", i+1, line, err)
		}
		out = append(out, e)
	}
	return out, nil
}
