package backends

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// strategiesYAML: listener live routes to pool blue (switched to green by
// a blue-green deploy); listener mix goes to pool mix, where the first
// backend weighs 1 and the second 3 (a canary at 25 %).
const strategiesYAML = `listeners:
  - { name: live, address: %s, routes: [ { pool: blue } ] }
  - { name: mix, address: %s, routes: [ { pool: mix } ] }
admin: { address: %s, token: %s }
state_file: %s
shutdown_timeout: 5s
pools:
  blue:
    targets: [ %s ]
    health: { path: /healthz, interval: 1s, timeout: 800ms }
  green:
    targets: [ %s ]
    health: { path: /healthz, interval: 1s, timeout: 800ms }
  mix:
    targets: [ { address: %s, weight: 1 }, { address: %s, weight: 3 } ]
    health: { path: /healthz, interval: 1s, timeout: 800ms }
`

// TestStrategiesAcrossBackends runs the two things the strategies ask of
// the proxy with backends nobody here wrote, in pairs (nginx to Node, Node
// to Python, Python to the sample app, the sample app to nginx): a
// blue-green switch while a streamed answer from the old backend is under
// way (it finishes there; the next request, from Go and from curl, reaches
// the new one), and a canary's weights (sequential requests split exactly
// 1 to 3).
func TestStrategiesAcrossBackends(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	for i := range backends {
		from, to := backends[i], backends[(i+1)%len(backends)]
		t.Run(from.name+"-to-"+to.name, func(t *testing.T) {
			t.Parallel()
			fromAddr, toAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
			waitReady(t, from.run(t, fromAddr), fromAddr)
			waitReady(t, to.run(t, toAddr), toAddr)
			dir := t.TempDir()
			yaml := fmt.Sprintf(strategiesYAML, proctest.FreeAddr(t), proctest.FreeAddr(t), proctest.FreeAddr(t), adminToken,
				filepath.Join(dir, "lb-state.json"), fromAddr, toAddr, fromAddr, toAddr)
			listeners, admin := runLB(t, dir, yaml, map[string][]string{"blue": {fromAddr}, "green": {toAddr}, "mix": {fromAddr, toAddr}})
			live, mix := listeners[0], listeners[1]
			client := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}
			defer client.CloseIdleConnections()

			// The old backend's stream is under way when live traffic moves.
			s := from.stream
			conn, err := net.Dial("tcp", live)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", s.path, live)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("GET %s from %s: %v", s.path, from.name, err)
			}
			first := make([]byte, len(s.first))
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("the first part of %s's stream: %v", from.name, err)
			}
			switchLive(t, admin, "blue", "green")
			rest, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("the rest of %s's stream, after the switch: %v", from.name, err)
			}
			sameBytes(t, from.name+"'s stream across the switch", append(first, rest...), s.whole)

			status, body := get(t, client, "http://"+live+to.getPath)
			if status != 200 || !bytes.Equal(body, to.wantGet) {
				t.Fatalf("after the switch GET %s answered %d %q, want %s's %q", to.getPath, status, body, to.name, to.wantGet)
			}
			out, err := exec.Command(curl, "-sS", "--max-time", "20", "http://"+live+to.getPath).Output()
			if err != nil || !bytes.Equal(out, to.wantGet) {
				t.Fatalf("after the switch curl got %q (%v), want %s's %q", out, err, to.name, to.wantGet)
			}

			// A canary at weight 1 of 4: 40 requests one after another.
			counts := map[string]int{}
			for range 40 {
				_, body := get(t, client, "http://"+mix+from.getPath)
				switch {
				case bytes.Equal(body, from.wantGet):
					counts[from.name]++
				case from.getPath == to.getPath && bytes.Equal(body, to.wantGet):
					counts[to.name]++
				default:
					counts["other: "+strings.TrimSpace(string(body[:min(len(body), 40)]))]++
				}
			}
			// The other backend may answer the path differently; the first's
			// own answers are what the split is read from.
			if counts[from.name] != 10 || (from.getPath == to.getPath && counts[to.name] != 30) {
				t.Errorf("40 requests at weights 1:3 went %v, want 10 to %s", counts, from.name)
			}
		})
	}
}

// switchLive sends the routes of pool from to pool to.
func switchLive(t *testing.T, admin, from, to string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+admin+"/v1/switch", strings.NewReader(fmt.Sprintf(`{"from":%q,"to":%q}`, from, to)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("switch %s to %s: %s %s", from, to, resp.Status, b)
	}
}

func get(t *testing.T, c *http.Client, url string) (int, []byte) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}
