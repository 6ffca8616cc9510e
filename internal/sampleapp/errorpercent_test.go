package sampleapp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestErrorPercent: --error-percent N makes exactly N of every 100 answers
// to / a 500, spread evenly, whatever the method; /healthz is neither
// failed nor counted.
func TestErrorPercent(t *testing.T) {
	tests := []struct {
		percent int
		// maxGap is the most answers from one 500 to the next (or from the
		// start to the first): "spread evenly".
		maxGap int
	}{
		{percent: 0},
		{percent: 5, maxGap: 20},
		{percent: 50, maxGap: 2},
		{percent: 100, maxGap: 1},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.percent)+"%", func(t *testing.T) {
			cfg := testConfig()
			cfg.ErrorPercent = tt.percent
			a := newApp(cfg)
			failed, last := 0, 0
			for i := 1; i <= 100; i++ {
				// A health check between any two answers changes nothing.
				hz := httptest.NewRecorder()
				a.ServeHTTP(hz, httptest.NewRequest(http.MethodGet, "/healthz", nil))
				if hz.Code != http.StatusOK {
					t.Fatalf("/healthz before answer %d: %d %q", i, hz.Code, hz.Body.String())
				}
				method, body := http.MethodGet, io.Reader(nil)
				if i%3 == 0 {
					method, body = http.MethodPost, strings.NewReader("echo")
				}
				w := httptest.NewRecorder()
				a.ServeHTTP(w, httptest.NewRequest(method, "/", body))
				switch w.Code {
				case http.StatusInternalServerError:
					failed++
					if tt.maxGap > 0 && i-last > tt.maxGap {
						t.Errorf("answer %d is a 500 %d answers after the one before, want at most %d", i, i-last, tt.maxGap)
					}
					last = i
					if !strings.Contains(w.Body.String(), "--error-percent") || w.Header().Get("X-Version") != "v7" {
						t.Errorf("500 answer %d: body %q, X-Version %q", i, w.Body.String(), w.Header().Get("X-Version"))
					}
				case http.StatusOK:
					want := "hello from h1 version v7\n"
					if method == http.MethodPost {
						want = "echo"
					}
					if w.Body.String() != want {
						t.Errorf("answer %d (%s): body %q, want %q", i, method, w.Body.String(), want)
					}
				default:
					t.Fatalf("answer %d (%s): status %d", i, method, w.Code)
				}
			}
			if failed != tt.percent {
				t.Errorf("%d of 100 answers to / were 500s, want exactly %d", failed, tt.percent)
			}
			if tt.maxGap > 0 && 100-last >= tt.maxGap {
				t.Errorf("the last 500 was answer %d: the failures are not spread to the end", last)
			}
		})
	}
}

// TestErrorPercentConcurrent: answers given at once still fail exactly N
// of every 100.
func TestErrorPercentConcurrent(t *testing.T) {
	for _, percent := range []int{5, 50} {
		t.Run(strconv.Itoa(percent)+"%", func(t *testing.T) {
			cfg := testConfig()
			cfg.ErrorPercent = percent
			a := newApp(cfg)
			codes := make(chan int, 100)
			var wg sync.WaitGroup
			for range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w := httptest.NewRecorder()
					a.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
					codes <- w.Code
				}()
			}
			wg.Wait()
			close(codes)
			failed := 0
			for c := range codes {
				if c == http.StatusInternalServerError {
					failed++
				}
			}
			if failed != percent {
				t.Errorf("%d of 100 concurrent answers were 500s, want %d", failed, percent)
			}
		})
	}
}

func TestErrorPercentFlag(t *testing.T) {
	tests := []struct {
		value   string
		want    int
		wantErr string
	}{
		{value: "-1", wantErr: "--error-percent -1: want 0 to 100"},
		{value: "101", wantErr: "--error-percent 101: want 0 to 100"},
		{value: "1.5", wantErr: "invalid value"},
		{value: "0", want: 0},
		{value: "5", want: 5},
		{value: "100", want: 100},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			cfg, err := ParseArgs("hello", []string{"--name", "n", "--error-percent", tt.value}, env(nil), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("--error-percent %s: config %+v, err %v; want an error containing %q", tt.value, cfg, err, tt.wantErr)
				}
				return
			}
			if err != nil || cfg.ErrorPercent != tt.want {
				t.Fatalf("--error-percent %s: ErrorPercent %d, err %v; want %d", tt.value, cfg.ErrorPercent, err, tt.want)
			}
		})
	}
}
