//go:build windows

package agent

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/zerodown/zerodown/internal/atomicfile"
)

// Symlinks need a privilege on Windows, so the current release is a small
// file, root/current, holding "releases/<version>". It is switched the same
// way: a new file renamed over the old (MoveFileEx with REPLACE_EXISTING).

func readCurrent(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "current"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func switchCurrent(root, target string) error {
	return atomicfile.Write(filepath.Join(root, "current"), []byte(target+"\n"), 0o644)
}

func removeCurrent(root string) error {
	return os.Remove(filepath.Join(root, "current"))
}

// syncDir is a no-op: Windows cannot open a directory for flushing, and
// NTFS journals renames.
func syncDir(string) error { return nil }
