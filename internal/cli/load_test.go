package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/loadgen"
)

// loadServer is a loopback server: GET answers "hello" (or 503 on
// /fail, or after 300ms on /slow), POST echoes the body.
func loadServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", "v7")
		switch {
		case r.URL.Path == "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/slow":
			timer := time.NewTimer(300 * time.Millisecond) // a slow endpoint
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
		case r.Method == http.MethodPost:
			_, _ = io.Copy(w, r.Body)
			return
		}
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestLoadExitCodes(t *testing.T) {
	t.Parallel()
	url := loadServer(t)
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   []string
		stderr   []string
		noStdout bool
	}{
		{"pass", []string{url + "/", "--rate", "100", "--duration", "200ms", "--progress", "0"}, ExitOK,
			[]string{"20 total, 20 sent, 20 ok, 0 failed", "✓ max_failed", "✓ min_rate", "PASS", "v7 20"}, nil, false},
		{"mix with echo", []string{url + "/", "--rate", "100", "--duration", "200ms", "--mix", "get=1,post=1", "--expect-echo",
			"--expect-body", "hell", "-H", "X-Test: 1"}, ExitOK,
			[]string{"20 ok", "GET " + url, "POST " + url, "PASS"}, []string{"load: 100 requests/s"}, false},
		{"failed requests", []string{url + "/fail", "--rate", "100", "--duration", "200ms", "--progress", "0"}, ExitFailed,
			[]string{"✗ max_failed", "20 ≤ 0", "http_5xx 20 (503: 20)", "FAIL: 1 of 3"}, []string{"1 of 3 thresholds failed: max_failed"}, false},
		{"failures allowed", []string{url + "/fail", "--rate", "100", "--duration", "200ms", "--max-failed", "-1", "--progress", "0"}, ExitOK,
			[]string{"✓ max_dropped", "PASS"}, nil, false},
		{"p99", []string{url + "/slow", "--rate", "20", "--duration", "200ms", "--p99", "250ms", "--progress", "0"}, ExitFailed,
			[]string{"✗ p99", "≤ 250ms"}, []string{"p99"}, false},
		{"body mismatch", []string{url + "/", "--rate", "100", "--duration", "100ms", "--expect-body", "bye", "--progress", "0"}, ExitFailed,
			[]string{"body_mismatch 10"}, nil, false},
		{"closed loop", []string{url + "/", "--max", "2", "--duration", "200ms", "--progress", "0"}, ExitOK,
			[]string{"closed loop, 2 connections", "raw client", "throughput"}, nil, false},
		{"refused", []string{closedURL(t), "--rate", "50", "--duration", "100ms", "--progress", "0"}, ExitFailed,
			[]string{"refused 5"}, nil, false},

		{"no URL", []string{}, ExitBadInput, nil, []string{"give at least one URL"}, true},
		{"bad URL", []string{"127.0.0.1:1", "--progress", "0"}, ExitBadInput, nil, []string{"want an absolute http://"}, true},
		{"unknown flag", []string{url, "--rat", "1"}, ExitBadInput, nil, []string{"unknown flag: --rat"}, true},
		{"bad rate", []string{url, "--rate", "-5"}, ExitBadInput, nil, []string{"--rate must be a positive"}, true},
		{"bad rate syntax", []string{url, "--rate", "fast"}, ExitBadInput, nil, []string{"invalid argument"}, true},
		{"rate and max", []string{url, "--rate", "5", "--max", "3"}, ExitBadInput, nil, []string{"exclude each other"}, true},
		{"min-rate with max", []string{url, "--max", "3", "--min-rate", "0.5"}, ExitBadInput, nil, []string{"open model"}, true},
		{"bad mix", []string{url, "--mix", "get=x"}, ExitBadInput, nil, []string{"--mix", "weight of GET"}, true},
		{"method and mix", []string{url, "-X", "PUT", "--mix", "get=1"}, ExitBadInput, nil, []string{"exclude each other"}, true},
		{"bad header", []string{url, "-H", "no colon"}, ExitBadInput, nil, []string{"--header", "Name: value"}, true},
		{"bad duration", []string{url, "--duration", "0s"}, ExitBadInput, nil, []string{"--duration must be positive"}, true},
		{"bad min-rate", []string{url, "--min-rate", "1.5"}, ExitBadInput, nil, []string{"--min-rate must be a ratio"}, true},
		{"bad client", []string{url, "--client", "curl"}, ExitBadInput, nil, []string{"--client"}, true},
		{"raw https", []string{"https://127.0.0.1:1/", "--client", "raw"}, ExitBadInput, nil, []string{"plain http"}, true},
		{"too few requests", []string{url, "--rate", "0.5", "--duration", "1s"}, ExitBadInput, nil, []string{"sends no request"}, true},
		{"body and file", []string{url, "-d", "x", "--body-file", "/nonexistent"}, ExitBadInput, nil, []string{"exclude each other"}, true},
		{"missing body file", []string{url, "--body-file", "/nonexistent/b"}, ExitBadInput, nil, []string{"--body-file"}, true},
		{"bad jtl path", []string{url, "--jtl", "/nonexistent/x.jtl"}, ExitBadInput, nil, []string{"--jtl"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runMain(append([]string{"load"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if tc.noStdout && stdout != "" {
				t.Errorf("bad input printed a report:\n%s", stdout)
			}
		})
	}
}

func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String() + "/"
}

// --json prints the report, --jtl and --html write their files.
func TestLoadOutputs(t *testing.T) {
	t.Parallel()
	url := loadServer(t)
	dir := t.TempDir()
	jtl, page := filepath.Join(dir, "r.jtl"), filepath.Join(dir, "r.html")
	code, stdout, stderr := runMain("load", url+"/", "--rate", "100", "--duration", "300ms", "--json", "--jtl", jtl, "--html", page,
		"--p99", "1s", "--progress", "1s")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout)
	}
	if rep.Schema != loadgen.SchemaVersion || rep.Requests.OK != 30 || !rep.Pass || len(rep.Thresholds) != 4 ||
		len(rep.Versions) != 1 || rep.Versions[0].Version != "v7" {
		t.Errorf("report %+v", rep)
	}
	f, err := os.Open(jtl)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 31 || strings.Join(records[0], ",") != strings.Join(loadgen.JTLColumns, ",") {
		t.Errorf("JTL: %d records, header %v", len(records), records[0])
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte(`id="chart-versions"`)) || !bytes.Contains(html, []byte("PASS")) {
		t.Errorf("HTML report lacks charts or verdict")
	}
}
