// Package e2e runs the real zerodown binary and the sample app as separate
// processes on loopback and checks what users would see.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

var bin struct {
	zerodown, hello string
}

func TestMain(m *testing.M) {
	built, err := proctest.BuildBinaries("zerodown-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dir := built.Dir
	bin.zerodown, bin.hello = built.Zerodown, built.Hello
	// The AWS drivers (here and in zerodown) find credentials for the
	// simulated ELB through the standard chain's environment variables,
	// never this machine's shared files or instance metadata.
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-example",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "aws-credentials"),
	} {
		os.Setenv(k, v)
	}
	// The parallel tests spend much of their time waiting on processes,
	// timers and the network: three at a time keep two cores busy (go
	// test's default is GOMAXPROCS). Four overloaded the machine in a full
	// run: the tests' own load clients ran out of workers. An explicit
	// -parallel wins.
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "3")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitHTTP waits until url answers with want.
func waitHTTP(t *testing.T, url string, want int, within time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	proctest.Eventually(t, within, fmt.Sprintf("%s to answer %d", url, want), func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == want
	})
}

// startHello runs the sample app on a free port and waits until it answers.
func startHello(t *testing.T, name, version string, extra ...string) (*proctest.Proc, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	args := append([]string{"--listen", addr, "--version", version, "--name", name}, extra...)
	p := proctest.Start(t, name, bin.hello, args...)
	waitHTTP(t, "http://"+addr+"/healthz", 200, 10*time.Second)
	return p, addr
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
