package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/engine"
)

// Output modes of the commands that run pipelines.
const (
	outputAuto = "auto" // live view on a terminal, log lines elsewhere
	outputLive = "live"
	outputLog  = "log"
	outputJSON = "json"
)

// runView shows a run's events: a live view with one line per host on a
// terminal, one log line per transition elsewhere, or JSON lines for CD
// servers and scripts.
type runView struct {
	mu     sync.Mutex
	w      io.Writer
	mode   string
	hosts  []string
	status map[string]string
	total  int
	done   int
	header string
	drawn  int // lines of the live view on screen
	last   time.Time
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newRunView(w io.Writer, mode, header string, hosts []string, totalTasks int) *runView {
	if mode == outputAuto || mode == "" {
		mode = outputLog
		if isTerminal(w) {
			mode = outputLive
		}
	}
	v := &runView{w: w, mode: mode, hosts: hosts, status: map[string]string{}, total: totalTasks, header: header}
	for _, h := range hosts {
		v.status[h] = "waiting"
	}
	if mode == outputLog {
		fmt.Fprintln(w, header)
	}
	return v
}

// hostStatus is what a host's line says after an event.
func hostStatus(e engine.Event) string {
	switch e.Type {
	case engine.EvDetaching:
		return "detaching"
	case engine.EvDraining:
		return fmt.Sprintf("draining, %d in flight", e.InFlight)
	case engine.EvDrained:
		return "drained"
	case engine.EvDeploying:
		return "deploying"
	case engine.EvActivated, engine.EvProgress:
		return e.Message
	case engine.EvAttaching:
		return "attaching"
	case engine.EvChecking:
		return "checking health"
	case engine.EvHealthy:
		return "done"
	case engine.EvRollback:
		return "rolling back"
	case engine.EvRolledBack:
		return "rolled back"
	case engine.EvDetached:
		return "NEEDS ATTENTION: " + e.Message
	case engine.EvFailed:
		return "failed: " + firstLine(e.Message)
	case engine.EvTask:
		if strings.HasPrefix(e.Message, "start upload") {
			return "uploading"
		}
	case engine.EvInfo:
		if strings.HasPrefix(e.Message, "uploaded ") {
			return firstLine(e.Message)
		}
	}
	return ""
}

// liveWidth is the width the live view keeps its lines within.
const liveWidth = 78

// clip shortens s to n characters, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Event shows one event.
func (v *runView) Event(e engine.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Type == engine.EvTask {
		v.done++
	}
	if e.Host != "" {
		if st := hostStatus(e); st != "" {
			v.status[e.Host] = st
		}
	}
	switch v.mode {
	case outputJSON:
		b, _ := json.Marshal(e)
		fmt.Fprintf(v.w, "%s\n", b)
	case outputLog:
		if e.Type == engine.EvTask {
			return // the transitions below say it better
		}
		who := e.Host
		if who == "" {
			who = "run"
		}
		msg := e.Message
		if e.Type == engine.EvFailed {
			// The details come once, in the run's final error.
			msg = firstLine(msg)
		}
		fmt.Fprintf(v.w, "%s %-12s %s\n", e.At.Format("15:04:05.000"), who, msg)
	default:
		// Redraw at most every 100ms, and always for the final states.
		if time.Since(v.last) >= 100*time.Millisecond || e.Type == engine.EvFailed || e.Type == engine.EvHealthy ||
			e.Type == engine.EvRolledBack || e.Type == engine.EvDetached {
			v.draw()
		}
	}
}

// draw rewrites the live view in place.
func (v *runView) draw() {
	v.last = time.Now()
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	width := 0
	for _, h := range v.hosts {
		width = max(width, len(h))
	}
	fmt.Fprintf(&b, "\x1b[2K%s\n", clip(fmt.Sprintf("%s  [%d/%d tasks]", v.header, min(v.done, v.total), v.total), liveWidth))
	for _, h := range v.hosts {
		// A line that wrapped would throw off the cursor moves of the
		// next redraw, so statuses are cut to fit a narrow terminal.
		fmt.Fprintf(&b, "\x1b[2K  %-*s  %s\n", width, h, clip(v.status[h], max(20, liveWidth-width-4)))
	}
	v.drawn = len(v.hosts) + 1
	io.WriteString(v.w, b.String())
}

// Close draws the final state of the live view. Events after it (a
// rollback the verifier asked for) print as log lines below whatever was
// written since, instead of redrawing over it.
func (v *runView) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mode == outputLive {
		v.draw()
		v.mode = outputLog
	}
}
