package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/notify"
	"github.com/zerodown/zerodown/internal/proctest"
)

// TestWebhooksAndApproval: an environment that requires approval waits
// for `zerodown approve`; a webhook gets run_started, waiting_for_approval
// and succeeded, signed; a second webhook that never answers changes
// nothing in the deploy but a warning.
func TestWebhooksAndApproval(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-for-the-test"
	var mu sync.Mutex
	var got []notify.Payload
	var badSig int
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p notify.Payload
		mu.Lock()
		defer mu.Unlock()
		if !notify.Verify(secret, body, r.Header.Get(notify.SignatureHeader)) || json.Unmarshal(body, &p) != nil {
			badSig++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got = append(got, p)
	}))
	defer hook.Close()
	release := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so the server sees the client go
		select {                           // never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer dead.Close()
	defer close(release)

	f := startDriverAgents(t, 2)
	startBuiltinFor(t, f)
	secretFile := filepath.Join(f.dir, "webhook.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(appYAML, "", filepath.Join(f.dir, "state.db")) +
		"environments:\n" + strings.Replace(f.envYAML("production"), "    lb:", "    require_approval: true\n    lb:", 1) +
		fmt.Sprintf("notify:\n  webhooks:\n    - { url: %q, secret_file: webhook.secret }\n    - { url: %q, events: [succeeded] }\n", hook.URL, dead.URL)
	cfgPath := filepath.Join(f.dir, "zerodown.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	events := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var evs []string
		for _, p := range got {
			evs = append(evs, p.Event)
		}
		return evs
	}
	var run string
	out, code := zerodownWhile(t, func(*proctest.Buffer) {
		proctest.Eventually(t, 30*time.Second, "the webhook to hear the run wait for approval", func() bool {
			evs := events()
			return len(evs) >= 2 && evs[1] == notify.WaitingForApproval
		})
		mu.Lock()
		run = got[0].Run
		mu.Unlock()
		if v, err := appVersion(f.agents[0].app); err == nil {
			t.Fatalf("the app answers %s before the approval: nothing may change before it", v)
		}
		if o, err := exec.Command(bin.zerodown, "approve", run, "-c", cfgPath).CombinedOutput(); err != nil {
			t.Fatalf("approve: %v\n%s", err, o)
		}
	}, "deploy", "production", "--version", "v1", "--artifact", helloTarGz(t), "-c", cfgPath, "-o", "log")
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	f.onVersion("v1")
	evs := events()
	if strings.Join(evs, ",") != "run_started,waiting_for_approval,succeeded" || badSig != 0 {
		t.Fatalf("the webhook heard %v (%d badly signed), want run_started, waiting_for_approval, succeeded", evs, badSig)
	}
	mu.Lock()
	last, waiting := got[2], got[1]
	mu.Unlock()
	if waiting.Stage != "environment-approval" {
		t.Fatalf("waiting_for_approval names stage %q", waiting.Stage)
	}
	if last.Run != run || last.Environment != "production" || last.Version != "v1" || last.SHA256 == "" || !strings.Contains(last.Text, "succeeded") {
		t.Fatalf("the outcome's payload: %+v", last)
	}
	show, err := exec.Command(bin.zerodown, "show", run, "-c", cfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(show), "stage environment-approval approved by ") {
		t.Fatalf("show %s should say who approved: %v\n%s", run, err, show)
	}
	if !strings.Contains(out, "gave up on 1 undelivered") || strings.Contains(out, secret) {
		t.Fatalf("the deploy's output should warn about the dead webhook, and never show the secret:\n%s", out)
	}
}
