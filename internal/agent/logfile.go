package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// The app writes its output straight into logs/<version>.log (opened with
// O_APPEND), so it keeps writing when the agent restarts. The agent keeps
// the file under log_max_bytes the way logrotate's copytruncate does: once
// it is larger, it is copied to <version>.log.1 and truncated; the app's
// next write lands at the new end.

// maxTailBytes bounds how much of a log is read for its last lines.
const maxTailBytes = 4 << 20

// MaxLogLines bounds the lines one logs call returns.
const MaxLogLines = 10000

// capLog rotates path when it is larger than max.
func capLog(path string, max int64) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check log size: %w", err)
	}
	if fi.Size() <= max {
		return nil
	}
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	defer src.Close()
	// Keep the last max bytes of what is there; a writer that outran the
	// check loses its oldest lines, not the disk.
	if off := fi.Size() - max; off > 0 {
		if _, err := src.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	tmp := path + ".1.new"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path+".1")
	}
	if err == nil {
		err = os.Truncate(path, 0)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rotate log %s: %w", path, err)
	}
	return nil
}

// appendLog writes one line of the agent's own into an app log, so the
// output of a failed release shows what the agent did.
func appendLog(path, format string, args ...any) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "zerodown-agent %s: %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// tailLog returns the last n lines of path, reaching into path.1 when path
// alone has fewer.
func tailLog(path string, n int) ([]string, error) {
	if n <= 0 {
		return []string{}, nil
	}
	lines, err := tailFile(path, n)
	if err != nil {
		return nil, err
	}
	if len(lines) < n {
		older, err := tailFile(path+".1", n-len(lines))
		if err != nil {
			return nil, err
		}
		lines = append(older, lines...)
	}
	return lines, nil
}

func tailFile(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	size := fi.Size()
	start := max(size-maxTailBytes, 0)
	buf := make([]byte, size-start)
	got, err := f.ReadAt(buf, start)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read log: %w", err)
	}
	buf = bytes.TrimRight(buf[:got], "\n") // shorter when truncated meanwhile
	if len(buf) == 0 {
		return []string{}, nil
	}
	all := strings.Split(string(buf), "\n")
	if start > 0 && len(all) > 1 {
		all = all[1:] // the first line is cut
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all, nil
}
