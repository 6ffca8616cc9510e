//go:build unix

package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// The current release is a symlink, root/current -> releases/<version>.

func readCurrent(root string) (string, error) {
	return os.Readlink(filepath.Join(root, "current"))
}

// switchCurrent creates the new link beside the old one and renames it over
// it: rename(2) replaces the name atomically, so current always names a
// release.
func switchCurrent(root, target string) error {
	tmp := filepath.Join(root, ".current.new")
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(root, "current")); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(root)
}

func removeCurrent(root string) error {
	return os.Remove(filepath.Join(root, "current"))
}

// syncDir flushes a directory, so renames in it survive a power cut.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
