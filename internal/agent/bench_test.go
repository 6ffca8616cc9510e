//go:build linux

package agent

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

// Run with:
//
//	go test -run XXX -bench . -benchtime 20x ./internal/agent/
//
// BenchmarkUpload reports MB/s of artifact through the API on loopback:
// received, hashed, written to a temporary file, unpacked (or copied) into
// the release directory and flushed to disk. BenchmarkActivate reports the
// activation overhead: the time of the activate call minus the sample
// app's own start-up time (exec to the first healthy answer, measured
// without the agent).

func BenchmarkUpload(b *testing.B) {
	random := make([]byte, 64<<20)
	if _, err := rand.Read(random); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name   string
		format string
		data   []byte
	}{
		{"file-64MiB", host.FormatFile, random},
		{"tar.gz-hello", host.FormatTarGz, helloArtifact(b)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := newFixture(b, func(cfg *config.Agent) { cfg.KeepReleases = 2 })
			name := ""
			if c.format == host.FormatFile {
				name = "app"
			}
			b.SetBytes(int64(len(c.data)))
			b.ResetTimer()
			for i := range b.N {
				f.upload(memRelease(fmt.Sprintf("v%d", i), c.format, name, c.data, helloSpec()))
			}
		})
	}
}

func BenchmarkActivate(b *testing.B) {
	startup := helloStartup(b, 20)
	for _, preflight := range []bool{false, true} {
		b.Run(fmt.Sprintf("preflight=%v", preflight), func(b *testing.B) {
			f := newFixture(b, func(c *config.Agent) { c.Preflight = &preflight })
			f.upload(helloRelease(b, "v1"))
			f.upload(helloRelease(b, "v2"))
			f.activate("v1")
			var took []time.Duration
			b.ResetTimer()
			for i := range b.N {
				v := []string{"v2", "v1"}[i%2]
				began := time.Now()
				f.activate(v)
				took = append(took, time.Since(began))
			}
			b.StopTimer()
			slices.Sort(took)
			med := took[len(took)/2]
			b.ReportMetric(float64(med.Microseconds())/1000, "activate-ms")
			b.ReportMetric(float64(startup.Microseconds())/1000, "app-startup-ms")
			b.ReportMetric(float64((med-startup).Microseconds())/1000, "overhead-ms")
		})
	}
}

// helloStartup is the median time from exec of the sample app to its first
// healthy answer, polled every half millisecond.
func helloStartup(b *testing.B, runs int) time.Duration {
	b.Helper()
	var d []time.Duration
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	for range runs {
		port := freePort(b)
		began := time.Now()
		cmd := exec.Command(helloBin, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--name", "bench")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
		deadline := began.Add(10 * time.Second)
		for {
			resp, err := c.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				b.Fatal("the sample app did not answer within 10s")
			}
			time.Sleep(500 * time.Microsecond)
		}
		d = append(d, time.Since(began))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	slices.Sort(d)
	return d[len(d)/2]
}
