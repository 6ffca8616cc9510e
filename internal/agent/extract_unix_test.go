//go:build unix

package agent

import (
	"archive/tar"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/zerodown/zerodown/internal/host"
)

// TestExtractAppliesUmask: an operator's umask 077 keeps the release to
// its owner, whatever the archive says. Not parallel: the umask belongs to
// the process, and parallel tests only start once this one has returned.
func TestExtractAppliesUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	data := tarGz(t, []tarEntry{
		{name: "d/", typ: tar.TypeDir, mode: 0o755},
		{name: "d/run", mode: 0o755, body: "x"},
		{name: "d/conf", mode: 0o644, body: "x"},
		{name: "implicit/f", mode: 0o644, body: "x"},
	})
	dir, err := unpackInSandbox(t, host.FormatTarGz, data, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{"d": 0o700, "d/run": 0o700, "d/conf": 0o600, "implicit": 0o700, "implicit/f": 0o600} {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v under umask 077", name, got, want)
		}
	}
}
