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
	"strconv"
	"strings"

	"github.com/zerodown/zerodown/internal/ctxio"
	"github.com/zerodown/zerodown/internal/host"
)

// errUnsafe marks an archive entry refused because it could write, or
// point, outside the release directory, clashes with another entry, or is
// of a kind a release has no use for. The upload answers 400 with it.
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

// maxNameLen and maxComponentLen bound an entry's name: PATH_MAX and
// NAME_MAX on Linux. The app could not open a longer path by name anyway,
// and they keep each entry's work (its directories, the checks) bounded.
const (
	maxNameLen      = 4096
	maxComponentLen = 255
)

// maxTarOverhead is what a tar stream may hold beyond the bytes of its
// files: headers, long names, padding. 200,000 entries take 100 to 400 MB
// of that; the bound keeps a gzip bomb of headers or zero padding from
// costing hours of CPU.
const maxTarOverhead = 1 << 30

// extractor unpacks into one fresh directory through an os.Root, which
// refuses anything that resolves outside it. On top of that it refuses, with
// a clear message naming the entry, what could escape or surprise later:
// names with .. or absolute, writing through a symlink, symlinks that point
// out, hard links to anything but a file of the same archive, devices and
// fifos, and two entries of the same name. Memory stays bounded whatever
// the archive: nothing is kept per entry; the file system itself tells
// what an earlier entry made (O_EXCL, Lstat).
type extractor struct {
	ctx   context.Context
	root  *os.Root
	lim   extractLimits
	total int64
	// made counts the files, directories and links created, with the
	// directories made for entries' parents.
	made int
	// verified is a directory known to be real all the way down (no
	// component a symlink or a file). Nothing is removed or replaced while
	// unpacking, so it stays so; keeping only the last one spares most
	// Lstat calls in an archive that lists a directory's files together.
	verified string
	// create opens a new file; a test replaces it to inject disk errors.
	create func(root *os.Root, name string, perm os.FileMode) (io.WriteCloser, error)
	// scratch is the directory for the gunzipped copy of a tar.gz.
	scratch string
}

// createFile creates a file that must not exist yet. The umask applies, as
// to every file the agent creates; perm is at most rwxr-xr-x (filePerm).
func createFile(root *os.Root, name string, perm os.FileMode) (io.WriteCloser, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
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

// filePerm is the mode a file is created with, before the umask: what the
// archive says, cut to rw-r--r--, or to rwxr-xr-x when the archive marks it
// executable, and the owner can always read. Never group or other write,
// set-id or sticky: the app may run as root, and whoever can edit its files
// runs code as root. An archive without modes (a zip made on Windows) gets
// rw-r--r--; a stricter mode stays (a 0600 secret stays 0600).
func filePerm(m fs.FileMode) fs.FileMode {
	m = m.Perm()
	if m == 0 {
		return 0o644
	}
	limit := fs.FileMode(0o644)
	if m&0o111 != 0 {
		limit = 0o755
	}
	return m&limit | 0o400
}

// dirPerm is filePerm for a directory: at most rwxr-xr-x, and the owner
// always has rwx, or the agent could not unpack into it or prune it later.
func dirPerm(m fs.FileMode) fs.FileMode {
	m = m.Perm()
	if m == 0 {
		return 0o755
	}
	return m&0o755 | 0o700
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
	x := &extractor{ctx: ctx, root: root, lim: lim, create: create, scratch: filepath.Dir(src.Name())}
	switch format {
	case host.FormatTarGz:
		err = x.tarGz(src, size)
	case host.FormatZip:
		err = x.zip(src, size)
	case host.FormatFile:
		err = x.single(src, name)
	default:
		err = fmt.Errorf("unknown format %q", format)
	}
	return x.total, err
}

func (x *extractor) stopped() error {
	if err := x.ctx.Err(); err != nil {
		return fmt.Errorf("unpacking stopped: %w", err)
	}
	return nil
}

// tarGz reads the archive twice. The first pass writes no file of the
// release: it counts the entries, adds up their sizes, checks every name,
// link and type, and reads to the end of the gzip stream, so an archive too
// large, unsafe, cut short or damaged is refused before a single file is
// written (and fsynced): 200,000 files took 50 s before the cap acted. It
// keeps the tar it gunzipped in a scratch file beside the upload, so the
// second pass, which writes, reads plain tar: one gunzip per upload, at
// the cost of the tar's size on disk (at most max_unpacked_bytes and its
// headers) while it unpacks.
func (x *extractor) tarGz(src io.ReaderAt, size int64) error {
	plain, err := os.CreateTemp(x.scratch, "unpack-*.tar")
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer os.Remove(plain.Name())
	defer plain.Close()
	entries := 0
	var sum int64
	err = x.walkTarGz(io.NewSectionReader(src, 0, size), plain, func(h *tar.Header, _ io.Reader) error {
		if entries++; entries > x.lim.maxEntries {
			return fmt.Errorf("%w: more than %d entries", errTooLarge, x.lim.maxEntries)
		}
		if err := checkTarHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if h.Size > x.lim.maxBytes-sum {
				return fmt.Errorf("%w: the entries add up to more than %d bytes (max_unpacked_bytes); %s alone is %d",
					errTooLarge, x.lim.maxBytes, short(h.Name), h.Size)
			}
			sum += h.Size
		}
		return nil
	})
	if err != nil {
		return err
	}
	n, err := plain.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	tr := tar.NewReader(io.NewSectionReader(plain, 0, n))
	for {
		if err := x.stopped(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack: read back %s: %w", plain.Name(), err)
		}
		if err := x.tarEntry(h, tr); err != nil {
			return err
		}
	}
}

// scratchError is a failure to write the scratch copy of the tar, told
// apart from a damaged archive: the disk is full, not the upload bad.
type scratchError struct{ err error }

func (e scratchError) Error() string { return "write the unpacked tar: " + e.err.Error() }
func (e scratchError) Unwrap() error { return e.err }

type scratchWriter struct{ w io.Writer }

func (s scratchWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		err = scratchError{err}
	}
	return n, err
}

// walkTarGz calls visit for each entry of a tar.gz and checks that the
// archive is whole: the tar ends with its end marker and the gzip stream is
// read to its end, which checks its CRC-32 and length.
//
// The end marker is two 512-byte zero blocks. GNU tar writes two; like GNU
// tar and archive/tar, one followed by the end of the stream is accepted:
// once a zero block is there, the writer meant the archive to end. None is
// refused: the archive was cut at an entry boundary, with files missing.
//
// gzip.Reader reads concatenated gzip members as one stream (RFC 1952
// allows a series); anything after the last member that is not a gzip
// member is refused, and so is anything but zeros between the tar end and
// the gzip end (the rest of tar's last record is zeros; a second tar
// appended after the end marker would be silently dropped).
//
// Every byte of tar read out of the gzip stream is also written to plain.
func (x *extractor) walkTarGz(src io.Reader, plain io.Writer, visit func(*tar.Header, io.Reader) error) error {
	gz, err := gzip.NewReader(ctxio.Reader(x.ctx, src))
	if err != nil {
		if err := x.stopped(); err != nil {
			return err
		}
		return fmt.Errorf("%w: not a gzip file: %v", errBadInput, err)
	}
	stream := &tarStream{r: io.TeeReader(gz, scratchWriter{plain}), max: x.lim.maxBytes + maxTarOverhead}
	tr := tar.NewReader(stream)
	where := "at its start"
	for {
		if err := x.stopped(); err != nil {
			return err
		}
		before := stream.n
		h, err := tr.Next()
		if err == io.EOF {
			// archive/tar reads no more than it needs, so what Next read
			// here is the last entry's padding (under 512 bytes) and the
			// zero blocks of the end marker.
			if (stream.n-before)/512 == 0 {
				return fmt.Errorf("%w: truncated archive: the tar ends %s without its end marker (two 512-byte zero blocks); entries may be missing",
					errBadInput, where)
			}
			break
		}
		if err != nil {
			return x.streamErr(err, where)
		}
		if err := visit(h, tr); err != nil {
			return err
		}
		// The rest of the entry's data, so that the count above starts
		// where it ends.
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return x.streamErr(err, "in entry "+short(h.Name))
		}
		where = "after entry " + short(h.Name)
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := stream.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return fmt.Errorf("%w: data after the tar end marker (%s): two archives joined?", errBadInput, where)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return x.streamErr(err, "after the tar end marker")
		}
	}
}

// short quotes a name for a message, cut after 200 bytes: a name may
// take 4 KiB (and an archive/tar one 1 MiB).
func short(name string) string {
	if len(name) <= 200 {
		return strconv.Quote(name)
	}
	return strconv.Quote(name[:200]) + "..."
}

// streamErr explains an error reading a tar.gz.
func (x *extractor) streamErr(err error, where string) error {
	if err := x.stopped(); err != nil {
		return err
	}
	var se scratchError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("unpack: %w", se)
	case errors.Is(err, errTooLarge):
		return err
	case errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("%w: damaged archive: the gzip checksum (CRC-32 or length) does not match (%s)", errBadInput, where)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: truncated archive: it ends in the middle of its data (%s)", errBadInput, where)
	case errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("%w: data after the end of the gzip stream (%s)", errBadInput, where)
	case errors.Is(err, tar.ErrHeader):
		return fmt.Errorf("%w: damaged tar: a bad header %s", errBadInput, where)
	}
	return fmt.Errorf("%w: damaged archive (%s): %v", errBadInput, where, err)
}

// tarStream counts the tar bytes read out of the gzip stream, up to max.
type tarStream struct {
	r      io.Reader
	n, max int64
}

func (s *tarStream) Read(p []byte) (int, error) {
	if s.n >= s.max {
		return 0, fmt.Errorf("%w: the tar inside the gzip stream is more than %d bytes (max_unpacked_bytes and 1 GiB of headers)", errTooLarge, s.max)
	}
	if left := s.max - s.n; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

// checkTarHeader is what the first pass checks of an entry without the
// file system: its name, type and link target.
func checkTarHeader(h *tar.Header) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, skip, err := entryName(h.Name)
	if err != nil || skip {
		return err
	}
	switch h.Typeflag {
	case tar.TypeDir, tar.TypeReg:
		return nil
	case tar.TypeSymlink:
		return checkLinkTarget(name, h.Linkname)
	case tar.TypeLink:
		_, err := hardlinkTarget(name, h.Linkname)
		return err
	}
	return fmt.Errorf("%w: %s: %s entries are not supported in a release", errUnsafe, name, tarType(h.Typeflag))
}

func (x *extractor) tarEntry(h *tar.Header, r io.Reader) error {
	if err := checkTarHeader(h); err != nil {
		return err
	}
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX defaults for later entries; archive/tar applies them
	}
	name, skip, _ := entryName(h.Name)
	if skip {
		return nil
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return x.dir(h.Name, name, os.FileMode(h.Mode))
	case tar.TypeReg: // archive/tar turns the old TypeRegA into TypeReg
		return x.file(h.Name, name, os.FileMode(h.Mode), r)
	case tar.TypeSymlink:
		return x.symlink(h.Name, name, h.Linkname)
	case tar.TypeLink:
		return x.hardlink(h.Name, name, h.Linkname)
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

// zip checks the archive's directory before anything is written: the
// entry count and the directory's size from its end record (readZipEnd),
// before archive/zip parses the directory (it would parse millions of
// entries whatever the caps); then every name, type and the sum of the
// sizes.
func (x *extractor) zip(r io.ReaderAt, size int64) error {
	zr, err := x.openZip(r, size)
	if err != nil {
		return err
	}
	var sum uint64
	for _, f := range zr.File {
		name, skip, err := entryName(f.Name)
		if err != nil || skip {
			if err != nil {
				return err
			}
			continue
		}
		mode := zipMode(f)
		switch {
		case mode.IsDir():
			if f.UncompressedSize64 != 0 {
				return fmt.Errorf("%w: damaged zip entry %s: a directory with %d bytes of data", errBadInput, name, f.UncompressedSize64)
			}
			continue
		case mode&fs.ModeSymlink != 0, mode.IsRegular():
		default:
			return fmt.Errorf("%w: %s: %s entries are not supported in a release", errUnsafe, name, mode.Type())
		}
		if f.UncompressedSize64 > uint64(x.lim.maxBytes)-sum {
			return fmt.Errorf("%w: the zip's entries add up to more than %d bytes (max_unpacked_bytes); %s alone is %d",
				errTooLarge, x.lim.maxBytes, short(name), f.UncompressedSize64)
		}
		sum += f.UncompressedSize64
	}
	for _, f := range zr.File {
		if err := x.stopped(); err != nil {
			return err
		}
		if err := x.zipEntry(f); err != nil {
			return err
		}
	}
	return nil
}

// zipMode is an entry's type and mode; an entry made where files have no
// Unix mode (Windows' FAT and NTFS) gets none, so filePerm and dirPerm
// give it their defaults.
func zipMode(f *zip.File) fs.FileMode {
	mode := f.Mode()
	if strings.HasSuffix(f.Name, "/") {
		mode |= fs.ModeDir
	}
	switch f.CreatorVersion >> 8 {
	case 3, 19: // Unix, macOS: archive/zip read the mode from ExternalAttrs
		return mode
	}
	return mode.Type()
}

func (x *extractor) zipEntry(f *zip.File) error {
	name, skip, err := entryName(f.Name)
	if err != nil || skip {
		return err
	}
	mode := zipMode(f)
	switch {
	case mode.IsDir():
		return x.dir(f.Name, name, mode)
	case mode&fs.ModeSymlink != 0:
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("%w: damaged zip entry %s: %v", errBadInput, name, err)
		}
		// Read to the end, or up to one byte past the cap: at its end
		// archive/zip checks the entry's CRC-32.
		target, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("%w: damaged zip entry %s: %v", errBadInput, name, err)
		}
		if len(target) > maxLinkTarget {
			return fmt.Errorf("%w: %s: symlink target longer than %d bytes", errUnsafe, name, maxLinkTarget)
		}
		return x.symlink(f.Name, name, string(target))
	case mode.IsRegular():
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("%w: damaged zip entry %s: %v", errBadInput, name, err)
		}
		defer rc.Close()
		return x.file(f.Name, name, mode, rc)
	}
	return fmt.Errorf("%w: %s: %s entries are not supported in a release", errUnsafe, name, mode.Type())
}

func (x *extractor) single(r io.Reader, name string) error {
	if err := checkFileName(name); err != nil {
		return err
	}
	return x.file(name, name, 0o755, r)
}

// checkFileName checks the name of a single-file artifact.
func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\:`) || strings.ContainsRune(name, 0) || !filepath.IsLocal(name) {
		return fmt.Errorf("file name %q: want a plain file name such as hello", name)
	}
	return nil
}

// entryName checks an entry's name, without the file system, and returns
// it cleaned; skip is true for the archive's top directory itself ("./").
func entryName(raw string) (name string, skip bool, err error) {
	switch {
	case raw == "":
		return "", false, fmt.Errorf("%w: an entry has no name", errUnsafe)
	case len(raw) > maxNameLen:
		return "", false, fmt.Errorf("%w: %s: a name of %d bytes, more than %d", errUnsafe, short(raw), len(raw), maxNameLen)
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
		if len(part) > maxComponentLen {
			return "", false, fmt.Errorf("%w: %q: a path component of %d bytes, more than %d", errUnsafe, raw, len(part), maxComponentLen)
		}
	}
	name = path.Clean(raw)
	if name == "." {
		return "", true, nil
	}
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", false, fmt.Errorf("%w: %q: not a local path on this system", errUnsafe, raw)
	}
	return name, false, nil
}

// count counts one thing created.
func (x *extractor) count() error {
	if x.made++; x.made > x.lim.maxEntries {
		return fmt.Errorf("%w: more than %d entries (files, directories and links, with the directories made for them)", errTooLarge, x.lim.maxEntries)
	}
	return nil
}

// commonDirs is the length of the longest run of whole leading components
// a and b share ("a/b" of "a/b/c" and "a/b/d").
func commonDirs(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	if (n == len(a) || a[n] == '/') && (n == len(b) || b[n] == '/') {
		return n
	}
	if i := strings.LastIndexByte(a[:n], '/'); i > 0 {
		return i
	}
	return 0
}

// parents makes the directories above name, for the entry raw, and checks
// that none is a symlink or a file. Nothing is written through a symlink,
// so every link's real location is the one its name says; that keeps the
// symlink checks sound.
func (x *extractor) parents(raw, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	for k := commonDirs(dir, x.verified); k < len(dir); {
		if next := strings.IndexByte(dir[k+1:], '/'); next < 0 {
			k = len(dir)
		} else {
			k += 1 + next
		}
		if err := x.mkdir(raw, name, dir[:k], 0o755); err != nil {
			return err
		}
	}
	x.verified = dir
	return nil
}

// mkdir makes the directory p for the entry raw (cleaned: name), or checks
// that it is a real directory already.
func (x *extractor) mkdir(raw, name, p string, perm os.FileMode) error {
	err := x.root.Mkdir(p, perm)
	if err == nil {
		return x.count()
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create directory %s: %w", p, err)
	}
	fi, err := x.root.Lstat(p)
	if err != nil {
		return fmt.Errorf("create directory %s: %w", p, err)
	}
	switch {
	case fi.IsDir():
		return nil
	case p == name:
		return fmt.Errorf("%w: %q: appears twice in the archive (a directory where an earlier entry made a %s)", errUnsafe, raw, kind(fi))
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %q: inside symlink %s", errUnsafe, raw, p)
	}
	return fmt.Errorf("%w: %q: below %s, which an earlier entry made a %s", errUnsafe, raw, p, kind(fi))
}

func kind(fi fs.FileInfo) string {
	switch {
	case fi.IsDir():
		return "directory"
	case fi.Mode()&fs.ModeSymlink != 0:
		return "symlink"
	case fi.Mode().IsRegular():
		return "file"
	}
	return fi.Mode().Type().String()
}

// createErr explains why creating name (a file, symlink or hard link) for
// the entry raw failed. One that exists already was made by an earlier
// entry of the same name, or for one below it: the archive's fault, 400.
func (x *extractor) createErr(raw, name, what string, err error) error {
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s %s: %w", what, name, err)
	}
	fi, lerr := x.root.Lstat(name)
	if lerr != nil {
		return fmt.Errorf("%w: %q: appears twice in the archive", errUnsafe, raw)
	}
	return fmt.Errorf("%w: %q: appears twice in the archive (a %s where an earlier entry made a %s)", errUnsafe, raw, what, kind(fi))
}

func (x *extractor) dir(raw, name string, mode os.FileMode) error {
	if err := x.parents(raw, name); err != nil {
		return err
	}
	if err := x.mkdir(raw, name, name, dirPerm(mode)); err != nil {
		return err
	}
	x.verified = name
	return nil
}

func (x *extractor) file(raw, name string, mode os.FileMode, r io.Reader) error {
	if err := x.parents(raw, name); err != nil {
		return err
	}
	w, err := x.create(x.root, name, filePerm(mode))
	if err != nil {
		return x.createErr(raw, name, "file", err)
	}
	if err := x.count(); err != nil {
		w.Close()
		return err
	}
	left := x.lim.maxBytes - x.total
	src := &readErr{r: ctxio.Reader(x.ctx, r)}
	// Up to one byte past the cap, so the source is read to its end
	// (where archive/zip checks the CRC-32) unless it is too large.
	n, err := io.Copy(w, io.LimitReader(src, left+1))
	x.total += n
	if src.err != nil && src.err != io.EOF {
		w.Close()
		if err := x.stopped(); err != nil {
			return err
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
	return nil
}

func (x *extractor) symlink(raw, name, target string) error {
	if err := checkLinkTarget(name, target); err != nil {
		return err
	}
	if err := x.parents(raw, name); err != nil {
		return err
	}
	if err := x.root.Symlink(target, name); err != nil {
		return x.createErr(raw, name, "symlink", err)
	}
	return x.count()
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

// hardlinkTarget checks a hard link's target by name and returns it
// cleaned.
func hardlinkTarget(name, target string) (string, error) {
	t, skip, err := entryName(target)
	if err != nil || skip {
		return "", fmt.Errorf("%w: hard link %s -> %s: the target is not a file earlier in this archive", errUnsafe, name, target)
	}
	return t, nil
}

// hardlink links name to a regular file made earlier by this archive: the
// release directory was empty, so a regular file in it, reached through
// real directories only, is one.
func (x *extractor) hardlink(raw, name, target string) error {
	t, err := hardlinkTarget(name, target)
	if err != nil {
		return err
	}
	if !x.madeFile(t) {
		return fmt.Errorf("%w: hard link %s -> %s: the target is not a file earlier in this archive", errUnsafe, name, target)
	}
	if err := x.parents(raw, name); err != nil {
		return err
	}
	if err := x.root.Link(t, name); err != nil {
		return x.createErr(raw, name, "hard link", err)
	}
	return x.count()
}

// madeFile reports whether name is a regular file below real directories.
func (x *extractor) madeFile(name string) bool {
	dir := path.Dir(name)
	if dir != "." {
		for k := commonDirs(dir, x.verified); k < len(dir); {
			if next := strings.IndexByte(dir[k+1:], '/'); next < 0 {
				k = len(dir)
			} else {
				k += 1 + next
			}
			if fi, err := x.root.Lstat(dir[:k]); err != nil || !fi.IsDir() {
				return false
			}
		}
	}
	fi, err := x.root.Lstat(name)
	return err == nil && fi.Mode().IsRegular()
}
