package exechost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/atomicfile"
	"github.com/zerodown/zerodown/internal/ctxio"
	"github.com/zerodown/zerodown/internal/host"
)

// DefaultKeep is how many artifacts an Artifacts store keeps: the newest
// used, which include the one a rollback goes back to.
const DefaultKeep = 5

// Artifacts stores releases as local files for exec hosts' scripts, by
// content: dir/<sha256>/<name>. One store serves every exec host of an
// environment, so a release is written once per run, not once per host.
type Artifacts struct {
	dir  string
	keep int

	mu       sync.Mutex
	verified map[string]bool // paths written or checked by this process
}

// NewArtifacts returns the store in dir (created when first written),
// keeping the keep newest artifacts; keep <= 0 is DefaultKeep.
func NewArtifacts(dir string, keep int) *Artifacts {
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &Artifacts{dir: dir, keep: keep, verified: map[string]bool{}}
}

// Dir is where the artifacts are.
func (a *Artifacts) Dir() string { return a.dir }

// Put stores r's artifact and returns its path. The content is checked
// against r.SHA256 as it is written, and written atomically: a file at
// the path is always the whole release. One already there is checked once
// per process and kept.
func (a *Artifacts) Put(ctx context.Context, r host.Release) (string, error) {
	if len(r.SHA256) != sha256.Size*2 || !isHex(r.SHA256) {
		return "", fmt.Errorf("release %s: sha256 %q is not a hex SHA-256 digest", r.Version, r.SHA256)
	}
	if r.Open == nil {
		return "", fmt.Errorf("release %s: no artifact to store", r.Version)
	}
	digestDir := filepath.Join(a.dir, r.SHA256)
	path := filepath.Join(digestDir, fileName(r))
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if a.verified[path] || a.matches(path, r.SHA256) {
		a.verified[path] = true
		_ = os.Chtimes(digestDir, now, now) // newest used: kept by prune
		return path, nil
	}
	if err := os.MkdirAll(digestDir, 0o755); err != nil {
		return "", fmt.Errorf("store release %s: %w", r.Version, err)
	}
	perm := os.FileMode(0o644)
	if r.Format == host.FormatFile {
		perm = 0o755 // a single executable, as the agent stores it
	}
	err := atomicfile.WriteFunc(path, perm, func(w io.Writer) error {
		src, err := r.Open()
		if err != nil {
			return err
		}
		defer src.Close()
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), ctxio.Reader(ctx, src))
		if err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != r.SHA256 {
			return fmt.Errorf("%w: read %d bytes with sha256 %s, want %s", host.ErrChecksum, n, got, r.SHA256)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("store release %s in %s: %w", r.Version, a.dir, err)
	}
	a.verified[path] = true
	_ = os.Chtimes(digestDir, now, now)
	a.prune()
	return path, nil
}

// matches reports whether the file at path holds content with digest
// sum: a store left by an earlier run is used only when it is whole.
func (a *Artifacts) matches(path, sum string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == sum
}

// prune removes all but the keep most recently used artifacts, and never
// one this process uses. a.mu is held.
func (a *Artifacts) prune() {
	entries, err := os.ReadDir(a.dir)
	if err != nil {
		return
	}
	type digest struct {
		name string
		at   time.Time
	}
	var ds []digest
	for _, e := range entries {
		if !e.IsDir() || len(e.Name()) != sha256.Size*2 || !isHex(e.Name()) {
			continue // not the store's: left alone
		}
		if fi, err := e.Info(); err == nil {
			ds = append(ds, digest{e.Name(), fi.ModTime()})
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].at.After(ds[j].at) })
	for i, d := range ds {
		if i < a.keep || a.inUse(d.name) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(a.dir, d.name))
	}
}

func (a *Artifacts) inUse(digest string) bool {
	for p := range a.verified {
		if filepath.Base(filepath.Dir(p)) == digest {
			return true
		}
	}
	return false
}

// fileName is the name the artifact gets in its digest's directory: a
// single file keeps its own, an archive is named for the app and its
// format, so a script can tell what it got.
func fileName(r host.Release) string {
	base := "release"
	if n := r.Spec.Name; n != "" && n == filepath.Base(n) && n != "." && n != ".." {
		base = n
	}
	switch r.Format {
	case host.FormatTarGz:
		return base + ".tar.gz"
	case host.FormatZip:
		return base + ".zip"
	}
	if n := filepath.Base(r.Name); r.Name != "" && n != "." && n != ".." && n != string(filepath.Separator) {
		return n
	}
	return base
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}
