// Package atomicfile replaces a file so that a crash leaves either the old
// or the new content, never a mix: every file zerodown rewrites in place
// (agent state, the lb's state, token files, nginx upstream files) goes
// through Write.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
)

// TempPrefix starts the name of every temporary file Write creates next to
// its target, so a directory's owner can tell a write a crash interrupted.
const TempPrefix = "."

// Write writes data to a temporary file next to path, flushes it, renames
// it over path and flushes the directory. The directory must exist.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc is Write for content too large to hold in memory (an
// artifact): fill writes it to the temporary file, and an error from fill
// (a checksum that does not match) leaves path as it was.
func WriteFunc(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+".*.new")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = fill(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable; Windows has no directory handle
// to flush, and its rename is already durable enough for NTFS.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
