package agent

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/zerodown/zerodown/internal/host"
)

// errUnsafe marks an archive entry refused because it could write, or
// point, outside the release directory, or is of a kind a release has no
// use for. The upload answers 400 with it.
var errUnsafe = errors.New("unsafe archive entry")

// errTooLarge marks an artifact or an unpacked release beyond its cap.
var errTooLarge = errors.New("too large")

// extractLimits bound what an archive may unpack to; an archive of a few
// kilobytes can otherwise expand to terabytes.
type extractLimits struct {
	maxBytes   int64
	maxEntries int
}

// defaultMaxEntries bounds the files, directories and links of a release.
const defaultMaxEntries = 200_000

// maxLinkTarget bounds a symlink target read from a zip entry.
const maxLinkTarget = 4096

// extractor unpacks into one fresh directory through an os.Root, which
// refuses anything that resolves outside it. On top of that it refuses, with
// a clear message, what could escape or surprise later: names with .. or
// absolute, writing through a symlink, symlinks that point out, hard links
// to anything but a file of the same archive, devices and fifos, and a
// second entry with the same name.
type extractor struct {
	ctx   context.Context
	root  *os.Root
	lim   extractLimits
	total int64
	count int
	// links and files are the symlinks and regular files written so far,
	// by cleaned name.
	links map[string]bool
	files map[string]bool
	// create opens a new file; a test replaces it to inject disk errors.
	create func(root *os.Root, name string, perm os.FileMode) (io.WriteCloser, error)
}

func createFile(root *os.Root, name string, perm os.FileMode) (io.WriteCloser, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	// OpenFile's mode is cut by the umask; the archive's is what counts.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return nil, err
	}
	return syncCloser{f}, nil
}

// syncCloser flushes a file to disk before closing it, so a release the
// agent calls complete survives a power cut.
type syncCloser struct{ *os.File }

func (s syncCloser) Close() error {
	if err := s.File.Sync(); err != nil {
		s.File.Close()
		return err
	}
	return s.File.Close()
}

// extract unpacks the artifact src (size bytes) of the given format into
// dir, which must not exist yet. name is the file name for host.FormatFile.
// On error dir may hold part of the archive; the caller removes it.
func extract(ctx context.Context, format string, src *os.File, size int64, dir, name string, lim extractLimits,
	create func(*os.Root, string, os.FileMode) (io.WriteCloser, error)) (unpacked int64, err error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", dir, err)
	}
	defer root.Close()
	if lim.maxEntries <= 0 {
		lim.maxEntries = defaultMaxEntries
	}
	if create == nil {
		create = createFile
	}
	x := &extractor{ctx: ctx, root: root, lim: lim, links: map[string]bool{}, files: map[string]bool{}, create: create}
	switch format {
	case host.FormatTarGz:
		err = x.tarGz(src)
	case host.FormatZip:
		err = x.zip(src, size)
	case host.FormatFile:
		err = x.single(src, name)
	default:
		err = fmt.Errorf("unknown format %q", format)
	}
	return x.total, err
}

func (x *extractor) tarGz(r io.Reader) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not a gzip file: %v", errBadInput, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: damaged tar: %v", errBadInput, err)
		}
		if err := x.tarEntry(h, tr); err != nil {
			return err
		}
	}
}

func (x *extractor) tarEntry(h *tar.Header, r io.Reader) error {
	switch h.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil // PAX defaults for later entries; archive/tar applies them
	}
	name, skip, err := x.entryName(h.Name)
	if err != nil || skip {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return x.dir(name, os.FileMode(h.Mode))
	case tar.TypeReg: // archive/tar turns the old TypeRegA into TypeReg
		return x.file(name, os.FileMode(h.Mode), r)
	case tar.TypeSymlink:
		return x.symlink(name, h.Linkname)
	case tar.TypeLink:
		return x.hardlink(name, h.Linkname)
	}
	return fmt.Errorf("%w: %s: %s entries are not supported in a release", errUnsafe, name, tarType(h.Typeflag))
}

func tarType(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeGNUSparse:
		return "sparse file"
	}
	return fmt.Sprintf("type %q", t)
}

func (x *extractor) zip(r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return fmt.Errorf("%w: not a zip file: %v", errBadInput, err)
	}
	for _, f := range zr.File {
		if err := x.zipEntry(f); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) zipEntry(f *zip.File) error {
	name, skip, err := x.entryName(f.Name)
	if err != nil || skip {
		return err
	}
	mode := f.Mode()
	switch {
	case mode.IsDir() || strings.HasSuffix(f.Name, "/"):
		return x.dir(name, mode.Perm())
	case mode&fs.ModeSymlink != 0:
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("%w: damaged zip entry %s: %v", errBadInput, name, err)
		}
		target, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("%w: damaged zip entry %s: %v", errBadInput, name, err)
		}
		if len(target) > maxLinkTarget {
			return fmt.Errorf("%w: %s: symlink target longer than %d bytes", errUnsafe, name, maxLinkTarget)
		}
		return x.symlink(name, string(target))
	case mode.IsRegular():
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("%w: damaged zip entry %s: %v", errBadInput, name, err)
		}
		defer rc.Close()
		return x.file(name, mode.Perm(), rc)
	}
	return fmt.Errorf("%w: %s: %s entries are not supported in a release", errUnsafe, name, mode.Type())
}

func (x *extractor) single(r io.Reader, name string) error {
	if err := checkFileName(name); err != nil {
		return err
	}
	return x.file(name, 0o755, r)
}

// checkFileName checks the name of a single-file artifact.
func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\:`) || strings.ContainsRune(name, 0) || !filepath.IsLocal(name) {
		return fmt.Errorf("file name %q: want a plain file name such as hello", name)
	}
	return nil
}

// entryName checks an entry's name and returns it cleaned; skip is true for
// the archive's top directory itself ("./").
func (x *extractor) entryName(raw string) (name string, skip bool, err error) {
	if err := x.ctx.Err(); err != nil {
		return "", false, fmt.Errorf("unpacking stopped: %w", err)
	}
	if x.count++; x.count > x.lim.maxEntries {
		return "", false, fmt.Errorf("%w: more than %d entries", errTooLarge, x.lim.maxEntries)
	}
	switch {
	case raw == "":
		return "", false, fmt.Errorf("%w: an entry has no name", errUnsafe)
	case strings.ContainsRune(raw, 0):
		return "", false, fmt.Errorf("%w: %q: NUL in name", errUnsafe, raw)
	case strings.Contains(raw, `\`):
		// A Windows separator: "..\x" escapes there; refused everywhere so
		// an archive unpacks the same on every host.
		return "", false, fmt.Errorf("%w: %q: backslash in name", errUnsafe, raw)
	case strings.HasPrefix(raw, "/"):
		return "", false, fmt.Errorf("%w: %q: absolute path", errUnsafe, raw)
	}
	for _, part := range strings.Split(raw, "/") {
		if part == ".." {
			return "", false, fmt.Errorf("%w: %q: .. in path", errUnsafe, raw)
		}
	}
	name = path.Clean(raw)
	if name == "." {
		return "", true, nil
	}
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", false, fmt.Errorf("%w: %q: not a local path on this system", errUnsafe, raw)
	}
	// Nothing is written through a symlink, so every link's real location
	// is the one its name says; that keeps symlink checks sound.
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if x.links[p] {
			return "", false, fmt.Errorf("%w: %q: inside symlink %s", errUnsafe, raw, p)
		}
	}
	if x.links[name] || x.files[name] {
		return "", false, fmt.Errorf("%w: %q: appears twice in the archive", errUnsafe, raw)
	}
	return name, false, nil
}

func (x *extractor) dir(name string, mode os.FileMode) error {
	// The owner always gets rwx, or the agent could not prune it later.
	if err := x.root.MkdirAll(name, mode.Perm()|0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", name, err)
	}
	return nil
}

func (x *extractor) parent(name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
	}
	return nil
}

func (x *extractor) file(name string, mode os.FileMode, r io.Reader) error {
	if err := x.parent(name); err != nil {
		return err
	}
	// Set-id and sticky bits are dropped; the owner can always read.
	w, err := x.create(x.root, name, mode.Perm()|0o400)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	left := x.lim.maxBytes - x.total
	src := &readErr{r: ctxReader{x.ctx, r}}
	n, err := io.Copy(w, io.LimitReader(src, left+1))
	x.total += n
	if src.err != nil && src.err != io.EOF {
		w.Close()
		if ctxErr := x.ctx.Err(); ctxErr != nil {
			return fmt.Errorf("unpacking stopped: %w", ctxErr)
		}
		return fmt.Errorf("%w: damaged archive at %s: %v", errBadInput, name, src.err)
	}
	if err != nil {
		w.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if n > left {
		return fmt.Errorf("%w: unpacks to more than %d bytes (max_unpacked_bytes)", errTooLarge, x.lim.maxBytes)
	}
	x.files[name] = true
	return nil
}

func (x *extractor) symlink(name, target string) error {
	if err := checkLinkTarget(name, target); err != nil {
		return err
	}
	if err := x.parent(name); err != nil {
		return err
	}
	if err := x.root.Symlink(target, name); err != nil {
		return fmt.Errorf("create symlink %s: %w", name, err)
	}
	x.links[name] = true
	return nil
}

// checkLinkTarget accepts a relative target that stays inside the release
// directory. ".." may only lead the target ("../lib/x", not "a/../../x"):
// the kernel resolves ".." after a symlink from where that link points,
// not lexically, so only leading ".." can be checked by name alone.
func checkLinkTarget(name, target string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: symlink %s -> %s: %s", errUnsafe, name, target, why)
	}
	switch {
	case target == "":
		return bad("empty target")
	case strings.ContainsRune(target, 0):
		return bad("NUL in target")
	case strings.Contains(target, `\`):
		return bad("backslash in target")
	case strings.HasPrefix(target, "/") || filepath.IsAbs(target) || filepath.VolumeName(target) != "":
		return bad("absolute target")
	}
	leading := true
	for _, part := range strings.Split(target, "/") {
		switch {
		case part == "..":
			if !leading {
				return bad(".. after a name")
			}
		case part == "." || part == "":
		default:
			leading = false
		}
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") || !filepath.IsLocal(filepath.FromSlash(resolved)) && resolved != "." {
		return bad("points outside the release")
	}
	return nil
}

func (x *extractor) hardlink(name, target string) error {
	t := path.Clean(target)
	if !x.files[t] {
		return fmt.Errorf("%w: hard link %s -> %s: the target is not a file earlier in this archive", errUnsafe, name, target)
	}
	if err := x.parent(name); err != nil {
		return err
	}
	if err := x.root.Link(t, name); err != nil {
		return fmt.Errorf("create hard link %s: %w", name, err)
	}
	x.files[name] = true
	return nil
}

// ctxReader stops a long copy when the upload is abandoned.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
