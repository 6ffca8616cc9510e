package server

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/store"
)

// TestEventsWithCurl reads a run's event stream with curl, a client
// nobody here wrote, resuming with Last-Event-ID as a browser does: it
// gets exactly the events after that id, in order, then "end", and curl
// sees the stream close.
func TestEventsWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl on this machine (apt-get install curl)")
	}
	f := newFixture(t)
	run := f.aRun(t, store.RunRunning)
	ctx := context.Background()
	f.events(t, run.ID, 1, 5)
	cmd := exec.Command(curl, "-sS", "-N", "--max-time", "20",
		"-H", "Authorization: Bearer "+f.tokens[RoleViewer], "-H", "Accept: text/event-stream", "-H", "Last-Event-ID: 2",
		f.ts.URL+"/api/v1/runs/"+run.ID+"/events")
	out := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		b, err := cmd.Output()
		out <- string(b)
		errc <- err
	}()
	// The run ends while curl listens: the stream carries the end and closes.
	time.AfterFunc(0, func() {
		_ = f.srv.st.UpdateRun(ctx, run.ID, store.RunUpdate{Status: store.RunSucceeded, EndedAt: time.Now()})
	})
	stream := <-out
	if err := <-errc; err != nil {
		t.Fatalf("curl: %v\n%s", err, stream)
	}
	ids := regexp.MustCompile(`(?m)^id: (\d+)$`).FindAllStringSubmatch(stream, -1)
	var got []string
	for _, m := range ids {
		got = append(got, m[1])
	}
	if strings.Join(got, ",") != "3,4,5" {
		t.Errorf("ids after Last-Event-ID 2: %v, want 3,4,5\n%s", got, stream)
	}
	if !strings.Contains(stream, "event: end\ndata: {") || !strings.Contains(stream, `"status":"succeeded"`) {
		t.Errorf("the stream does not end with the run's end:\n%s", stream)
	}
}
