package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/engine"
)

func TestRunViewModes(t *testing.T) {
	at := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	events := []engine.Event{
		{At: at, Host: "staging-1", Type: engine.EvTask, Message: "start detach staging-1"},
		{At: at, Host: "staging-1", Type: engine.EvDetaching, Message: "detaching 127.0.0.1:8101"},
		{At: at, Host: "staging-1", Type: engine.EvDraining, Message: "draining, 3 in flight", InFlight: 3},
		{At: at, Host: "staging-1", Type: engine.EvHealthy, Message: "healthy"},
	}
	t.Run("log", func(t *testing.T) {
		var b strings.Builder
		v := newRunView(&b, outputLog, "run r-1: deploy v2 to staging", []string{"staging-1"}, 6)
		for _, e := range events {
			v.Event(e)
		}
		v.Close()
		want := "run r-1: deploy v2 to staging\n" +
			"18:00:00.000 staging-1    detaching 127.0.0.1:8101\n" +
			"18:00:00.000 staging-1    draining, 3 in flight\n" +
			"18:00:00.000 staging-1    healthy\n"
		if b.String() != want {
			t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
		}
	})
	t.Run("json", func(t *testing.T) {
		var b strings.Builder
		v := newRunView(&b, outputJSON, "header", []string{"staging-1"}, 6)
		for _, e := range events {
			v.Event(e)
		}
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		if len(lines) != len(events) {
			t.Fatalf("%d lines for %d events:\n%s", len(lines), len(events), b.String())
		}
		var got engine.Event
		if err := json.Unmarshal([]byte(lines[2]), &got); err != nil || got.InFlight != 3 || got.Type != engine.EvDraining {
			t.Fatalf("line %q: %+v %v", lines[2], got, err)
		}
	})
	t.Run("live", func(t *testing.T) {
		var b strings.Builder
		v := newRunView(&b, outputLive, "run r-1", []string{"staging-1", "staging-2"}, 6)
		for _, e := range events {
			v.Event(e)
		}
		v.Close()
		last := b.String()[strings.LastIndex(b.String(), "run r-1"):]
		for _, want := range []string{"[1/6 tasks]", "staging-1  done", "staging-2  waiting"} {
			if !strings.Contains(last, want) {
				t.Fatalf("final screen lacks %q:\n%q", want, last)
			}
		}
	})
}
