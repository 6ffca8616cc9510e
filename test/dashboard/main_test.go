// Package dashboard tests zerodown server's web dashboard in a real
// headless Chromium (Debian's chromium, driven with chromedp): a real
// fleet deploys under load while the test watches the pages a person
// would, and benchmarks time what the browser sees.
package dashboard

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zerodown/zerodown/internal/proctest"
)

var bin struct {
	zerodown, hello string
}

func TestMain(m *testing.M) {
	b, err := proctest.BuildBinaries("zerodown-dashboard-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.zerodown, bin.hello = b.Zerodown, b.Hello
	code := m.Run()
	b.Remove()
	os.Exit(code)
}

// chromium finds Chromium; without it the test is skipped, unless CI or
// ZERODOWN_REQUIRE_CHROMIUM says the browser must be there.
func chromium(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const hint = "no chromium on this machine; install Debian's chromium (apt-get install chromium), as .ci/run does"
	if os.Getenv("ZERODOWN_REQUIRE_CHROMIUM") != "" || os.Getenv("CI") != "" {
		tb.Fatal(hint + ": ZERODOWN_REQUIRE_CHROMIUM or CI is set, so the dashboard must be checked in a browser")
	}
	tb.Skip(hint)
	return ""
}

// startBrowser starts a headless Chromium for the test and returns its
// context, from which tabs are opened; the browser ends with the test.
func startBrowser(tb testing.TB, ctx context.Context) context.Context {
	tb.Helper()
	exe := chromium(tb)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browser, cancelBrowser := chromedp.NewContext(actx)
	tb.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(browser); err != nil {
		tb.Fatalf("start %s: %v", exe, err)
	}
	return browser
}

// newTab opens a tab in the browser; an exception or error in its
// console fails the test when the tab closes.
func newTab(tb testing.TB, browser context.Context) context.Context {
	tb.Helper()
	var mu sync.Mutex
	var bad []string
	tb.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range bad {
			tb.Errorf("the page's console: %s", m)
		}
	})
	tab, closeTab := chromedp.NewContext(browser)
	tb.Cleanup(closeTab)
	if err := chromedp.Do(tab); err != nil {
		tb.Fatal(err)
	}
	go func() {
		for m, err := range chromedp.Console(tab) {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				mu.Lock()
				bad = append(bad, m.String())
				mu.Unlock()
			}
		}
	}()
	return tab
}

// artifactDir is where screenshots are kept after the test:
// $ZERODOWN_TEST_ARTIFACTS/dashboard, else test/dashboard/artifacts
// (ignored by git).
func artifactDir(tb testing.TB) string {
	tb.Helper()
	dir := "artifacts"
	if d := os.Getenv("ZERODOWN_TEST_ARTIFACTS"); d != "" {
		dir = filepath.Join(d, "dashboard")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// screenshot saves the whole page of a tab as a PNG artifact.
func screenshot(tb testing.TB, tab context.Context, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(artifactDir(tb), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		tb.Error(err)
		return
	}
	tb.Logf("screenshot: %s", p)
}

// waitFor polls a JavaScript condition in a tab until it is true, or
// fails naming what it waited for and what the page showed.
func waitFor(tb testing.TB, tab context.Context, within time.Duration, what, cond, show string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tab, within+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err == nil {
		return
	}
	seen := ""
	if show != "" {
		sctx, cancel := context.WithTimeout(tab, 5*time.Second)
		seen, _ = chromedp.Run(sctx, chromedp.Evaluate[string](show))
		cancel()
	}
	tb.Fatalf("gave up after %s waiting for %s (%v); the page showed: %s", within, what, err, seen)
}
