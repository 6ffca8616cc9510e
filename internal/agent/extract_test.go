package agent

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/host"
)

type zipEntry struct {
	name string
	mode fs.FileMode
	body string
	// stored skips compression, which is slow under the race detector.
	stored bool
}

func zipBytes(t testing.TB, entries []zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.stored {
			h.Method = zip.Store
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unpackInSandbox extracts into sandbox/rel and returns rel's path.
func unpackInSandbox(t testing.TB, format string, data []byte, lim extractLimits) (string, error) {
	t.Helper()
	sandbox := t.TempDir()
	src := filepath.Join(sandbox, "artifact")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := filepath.Join(sandbox, "rel")
	_, err = extract(context.Background(), format, f, int64(len(data)), dir, "app", lim, nil)
	checkContained(t, sandbox, dir)
	return dir, err
}

// checkContained fails the test when anything was written beside dir in
// sandbox, or a symlink in dir resolves outside it.
func checkContained(t testing.TB, sandbox, dir string) {
	t.Helper()
	entries, err := os.ReadDir(sandbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "rel" && e.Name() != "artifact" {
			t.Fatalf("extraction wrote %s outside the release directory", e.Name())
		}
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		lexical := filepath.Join(filepath.Dir(p), target)
		if !inside(lexical, dir) {
			t.Fatalf("symlink %s -> %s points outside the release", p, target)
		}
		if resolved, err := filepath.EvalSymlinks(p); err == nil && !inside(resolved, realDir) {
			t.Fatalf("symlink %s -> %s resolves to %s, outside the release", p, target, resolved)
		}
		return nil
	})
}

func inside(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

var testLimits = extractLimits{maxBytes: 1 << 20, maxEntries: 100}

func TestExtractTarGz(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		lim     extractLimits
		wantErr error  // nil: must succeed
		errHas  string // part of the message
		check   func(t *testing.T, dir string)
	}{
		{name: "a normal release", entries: []tarEntry{
			{name: "./", typ: tar.TypeDir, mode: 0o755},
			{name: "./bin/", typ: tar.TypeDir, mode: 0o755},
			{name: "./bin/app", mode: 0o4755, body: "#!/bin/sh\n"},
			{name: "./bin/current", typ: tar.TypeSymlink, linkname: "app"},
			{name: "./lib", typ: tar.TypeSymlink, linkname: "bin"},
			{name: "./share/doc/readme", body: "hi"},
			{name: "./share/doc/up", typ: tar.TypeSymlink, linkname: "../../bin/app"},
			{name: "./copy", typ: tar.TypeLink, linkname: "bin/app"},
			{name: "./self", typ: tar.TypeSymlink, linkname: "."},
		}, check: func(t *testing.T, dir string) {
			fi, err := os.Stat(filepath.Join(dir, "bin", "app"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o755 {
				t.Errorf("bin/app mode %v, want -rwxr-xr-x (setuid dropped)", fi.Mode())
			}
			if b, err := os.ReadFile(filepath.Join(dir, "lib", "app")); err != nil || string(b) != "#!/bin/sh\n" {
				t.Errorf("lib/app: %q %v", b, err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "copy")); err != nil || string(b) != "#!/bin/sh\n" {
				t.Errorf("hard link: %q %v", b, err)
			}
		}},
		{name: "dot dot", entries: []tarEntry{{name: "../evil", body: "x"}}, wantErr: errUnsafe, errHas: ".. in path"},
		{name: "dot dot inside", entries: []tarEntry{{name: "a/../../evil", body: "x"}}, wantErr: errUnsafe},
		{name: "dot dot that stays inside is refused too", entries: []tarEntry{{name: "a/../b", body: "x"}}, wantErr: errUnsafe},
		{name: "absolute path", entries: []tarEntry{{name: "/tmp/evil", body: "x"}}, wantErr: errUnsafe, errHas: "absolute"},
		{name: "backslash", entries: []tarEntry{{name: `..\evil`, body: "x"}}, wantErr: errUnsafe, errHas: "backslash"},
		{name: "symlink to an absolute path", entries: []tarEntry{{name: "etc", typ: tar.TypeSymlink, linkname: "/etc"}}, wantErr: errUnsafe},
		{name: "symlink up and out", entries: []tarEntry{{name: "a/up", typ: tar.TypeSymlink, linkname: "../../outside"}}, wantErr: errUnsafe, errHas: "outside"},
		{name: "symlink with .. after a name", entries: []tarEntry{
			{name: "a/b/s", typ: tar.TypeSymlink, linkname: "../.."},
			{name: "l", typ: tar.TypeSymlink, linkname: "a/b/s/.."},
		}, wantErr: errUnsafe, errHas: ".. after a name"},
		{name: "write through a symlink", entries: []tarEntry{
			{name: "d/", typ: tar.TypeDir},
			{name: "l", typ: tar.TypeSymlink, linkname: "d"},
			{name: "l/x", body: "x"},
		}, wantErr: errUnsafe, errHas: "inside symlink"},
		{name: "symlink then file of the same name", entries: []tarEntry{
			{name: "l", typ: tar.TypeSymlink, linkname: "d"},
			{name: "l", body: "x"},
		}, wantErr: errUnsafe, errHas: "twice"},
		{name: "hard link to a system file", entries: []tarEntry{{name: "passwd", typ: tar.TypeLink, linkname: "/etc/passwd"}}, wantErr: errUnsafe},
		{name: "hard link up and out", entries: []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "../artifact"}}, wantErr: errUnsafe},
		{name: "hard link to a later file", entries: []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "f"}, {name: "f", body: "x"}}, wantErr: errUnsafe},
		{name: "character device", entries: []tarEntry{{name: "null", typ: tar.TypeChar}}, wantErr: errUnsafe, errHas: "character device"},
		{name: "fifo", entries: []tarEntry{{name: "p", typ: tar.TypeFifo}}, wantErr: errUnsafe},
		{name: "duplicate file", entries: []tarEntry{{name: "f", body: "1"}, {name: "./f", body: "2"}}, wantErr: errUnsafe, errHas: "twice"},
		{name: "over the unpacked cap", entries: []tarEntry{{name: "a", body: strings.Repeat("x", 600)}, {name: "b", body: strings.Repeat("x", 600)}},
			lim: extractLimits{maxBytes: 1000, maxEntries: 10}, wantErr: errTooLarge, errHas: "max_unpacked_bytes"},
		{name: "too many entries", entries: []tarEntry{{name: "a"}, {name: "b"}, {name: "c"}},
			lim: extractLimits{maxBytes: 1000, maxEntries: 2}, wantErr: errTooLarge, errHas: "entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := tt.lim
			if lim.maxBytes == 0 {
				lim = testLimits
			}
			dir, err := unpackInSandbox(t, host.FormatTarGz, tarGz(t, tt.entries), lim)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tt.check != nil {
					tt.check(t, dir)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("got %v, want %v containing %q", err, tt.wantErr, tt.errHas)
			}
		})
	}
}

func TestExtractZip(t *testing.T) {
	tests := []struct {
		name    string
		entries []zipEntry
		wantErr error
		errHas  string
		check   func(t *testing.T, dir string)
	}{
		{name: "a normal release", entries: []zipEntry{
			{name: "bin/", mode: fs.ModeDir | 0o755},
			{name: "bin/app", mode: 0o755, body: "app"},
			{name: "app", mode: fs.ModeSymlink | 0o777, body: "bin/app"},
		}, check: func(t *testing.T, dir string) {
			if b, err := os.ReadFile(filepath.Join(dir, "app")); err != nil || string(b) != "app" {
				t.Errorf("app: %q %v", b, err)
			}
		}},
		{name: "zip slip", entries: []zipEntry{{name: "../../evil", body: "x"}}, wantErr: errUnsafe},
		{name: "absolute", entries: []zipEntry{{name: "/evil", body: "x"}}, wantErr: errUnsafe},
		{name: "windows zip slip", entries: []zipEntry{{name: `..\..\evil`, body: "x"}}, wantErr: errUnsafe},
		{name: "symlink out", entries: []zipEntry{{name: "l", mode: fs.ModeSymlink | 0o777, body: "../../etc"}}, wantErr: errUnsafe},
		{name: "symlink absolute", entries: []zipEntry{{name: "l", mode: fs.ModeSymlink | 0o777, body: "/etc/passwd"}}, wantErr: errUnsafe},
		{name: "through a symlink", entries: []zipEntry{
			{name: "d/", mode: fs.ModeDir | 0o755},
			{name: "l", mode: fs.ModeSymlink | 0o777, body: "d"},
			{name: "l/x", body: "x"},
		}, wantErr: errUnsafe},
		{name: "named pipe", entries: []zipEntry{{name: "p", mode: fs.ModeNamedPipe | 0o644}}, wantErr: errUnsafe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := unpackInSandbox(t, host.FormatZip, zipBytes(t, tt.entries), testLimits)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, dir)
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("got %v, want %v containing %q", err, tt.wantErr, tt.errHas)
			}
		})
	}
}

func TestExtractZipBomb(t *testing.T) {
	// A megabyte of zeros compresses to about a kilobyte.
	data := zipBytes(t, []zipEntry{{name: "zeros", body: strings.Repeat("\x00", 1<<20)}})
	_, err := unpackInSandbox(t, host.FormatZip, data, extractLimits{maxBytes: 64 << 10, maxEntries: 10})
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("got %v, want errTooLarge", err)
	}
}

func TestExtractSingleFile(t *testing.T) {
	tests := []struct {
		name, file string
		ok         bool
	}{
		{"plain", "hello", true},
		{"with dot", "hello.exe", true},
		{"slash", "bin/hello", false},
		{"dot dot", "..", false},
		{"backslash", `..\hello`, false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sandbox := t.TempDir()
			src := filepath.Join(sandbox, "artifact")
			if err := os.WriteFile(src, []byte("binary"), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dir := filepath.Join(sandbox, "rel")
			_, err = extract(context.Background(), host.FormatFile, f, 6, dir, tt.file, testLimits, nil)
			checkContained(t, sandbox, dir)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok {
				fi, err := os.Stat(filepath.Join(dir, tt.file))
				if err != nil || fi.Mode().Perm() != 0o755 {
					t.Fatalf("stat: %v %v", fi, err)
				}
			}
		})
	}
}

// seedTars are tar.gz archives with every trick the extraction refuses;
// the fuzzers start from them, and they run in every `go test`.
func seedTars(t testing.TB) [][]byte {
	return append(damagedTars(t),
		tarGz(t, []tarEntry{{name: "ok/", typ: tar.TypeDir}, {name: "ok/f", body: "x"}, {name: "ok/l", typ: tar.TypeSymlink, linkname: "f"}, {name: "ok/h", typ: tar.TypeLink, linkname: "ok/f"}}),
		tarGz(t, []tarEntry{{name: "../evil", body: "x"}}),
		tarGz(t, []tarEntry{{name: "/abs/evil", body: "x"}}),
		tarGz(t, []tarEntry{{name: "l", typ: tar.TypeSymlink, linkname: "/"}, {name: "l/evil", body: "x"}}),
		tarGz(t, []tarEntry{{name: "l", typ: tar.TypeSymlink, linkname: ".."}, {name: "l/evil", body: "x"}}),
		tarGz(t, []tarEntry{{name: "a/b/s", typ: tar.TypeSymlink, linkname: "../.."}, {name: "a/b/s/t", typ: tar.TypeSymlink, linkname: "../x"}}),
		tarGz(t, []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "/etc/passwd"}}),
		tarGz(t, []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "../artifact"}}),
		tarGz(t, []tarEntry{{name: `a\..\..\evil`, body: "x"}}),
		tarGz(t, []tarEntry{{name: "d/", typ: tar.TypeDir, mode: 0o777}, {name: "d/f", mode: 0o6777, body: "x"}, {name: "g", mode: 0o666, body: "x"}}),
		tarGz(t, []tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "d", body: "x"}}),
		tarGz(t, []tarEntry{{name: "f", body: "x"}, {name: "f/", typ: tar.TypeDir}, {name: "f/x", body: "x"}}),
		tarGz(t, []tarEntry{{name: "f", body: "x"}, {name: "h", typ: tar.TypeLink, linkname: "f"}, {name: "h", typ: tar.TypeLink, linkname: "f"}}),
	)
}

// damagedTars: cut at an entry boundary, a wrong gzip CRC, the gzip
// trailer cut, garbage after the gzip stream, a second tar after the end
// marker.
func damagedTars(t testing.TB) [][]byte {
	whole := tarGz(t, []tarEntry{{name: "a", body: "x"}, {name: "b", body: "y"}})
	tarball := gunzip(t, whole)
	badCRC := bytes.Clone(whole)
	badCRC[len(badCRC)-8] ^= 1
	return [][]byte{
		gzipOf(t, tarball[:len(tarball)-1024]),
		badCRC,
		whole[:len(whole)-8],
		append(bytes.Clone(whole), "garbage"...),
		gzipOf(t, append(bytes.Clone(tarball), tarball...)),
	}
}

func seedZips(t testing.TB) [][]byte {
	return [][]byte{
		zipBytes(t, []zipEntry{{name: "ok/", mode: fs.ModeDir | 0o755}, {name: "ok/f", body: "x"}, {name: "ok/l", mode: fs.ModeSymlink | 0o777, body: "f"}}),
		zipBytes(t, []zipEntry{{name: "../../evil", body: "x"}}),
		zipBytes(t, []zipEntry{{name: "/evil", body: "x"}}),
		zipBytes(t, []zipEntry{{name: `..\evil`, body: "x"}}),
		zipBytes(t, []zipEntry{{name: "l", mode: fs.ModeSymlink | 0o777, body: "../.."}, {name: "l/evil", body: "x"}}),
		zipBytes(t, []zipEntry{{name: "l", mode: fs.ModeSymlink | 0o777, body: "/tmp"}}),
		zipBytes(t, []zipEntry{{name: "d/", mode: fs.ModeDir | 0o777}, {name: "d/f", mode: 0o777, body: "x"}, {name: "g", mode: 0o666, body: "x"}}),
		zipBytes(t, []zipEntry{{name: "d/", mode: fs.ModeDir | 0o755}, {name: "d", body: "x"}}),
		zipBytes(t, []zipEntry{{name: "f", body: "x"}, {name: "f/", mode: fs.ModeDir | 0o755}}),
		windowsZip(t, "bin/", "bin/tool.exe", "readme.txt"),
		rawZip(3, 4_000_000),
		func() []byte { // the end record says 2 entries, the directory holds 20
			b := rawZip(20, 2)
			binary.LittleEndian.PutUint32(b[len(b)-10:], 2*52)
			return b
		}(),
		lyingSize(t),
	}
}

func fuzzExtract(f *testing.F, format string, seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever the archive, nothing lands outside the release
		// directory and no symlink in it points out (checkContained).
		dir, _ := unpackInSandbox(t, format, data, extractLimits{maxBytes: 1 << 20, maxEntries: 1000})
		// Nothing unpacked is writable by group or others, or set-id.
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink != 0 {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.Mode()&(0o022|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Fatalf("%s: mode %v", p, fi.Mode())
			}
			return nil
		})
	})
}

func FuzzExtractTarGz(f *testing.F) { fuzzExtract(f, host.FormatTarGz, seedTars(f)) }

func FuzzExtractZip(f *testing.F) { fuzzExtract(f, host.FormatZip, seedZips(f)) }

// umask is the process's umask, read off a file created with 0777.
func umask(t testing.TB) fs.FileMode {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ fi.Mode().Perm()
}

// windowsZip is a zip as Windows makes it: a FAT creator and no Unix
// modes in the external attributes.
func windowsZip(t testing.TB, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, CreatorVersion: 0})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(name, "/") {
			if _, err := io.WriteString(w, "data"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractModes(t *testing.T) {
	mask := umask(t)
	tests := []struct {
		name   string
		format string
		data   []byte
		want   map[string]fs.FileMode // before the umask
	}{
		{"tar with 0666 and 0777", host.FormatTarGz, tarGz(t, []tarEntry{
			{name: "d/", typ: tar.TypeDir, mode: 0o777},
			{name: "d/conf", mode: 0o666, body: "x"},
			{name: "d/run", mode: 0o777, body: "x"},
			{name: "d/secret", mode: 0o600, body: "x"},
			{name: "d/suid", mode: 0o6775, body: "x"},
			{name: "implicit/f", mode: 0o640, body: "x"},
		}), map[string]fs.FileMode{"d": 0o755, "d/conf": 0o644, "d/run": 0o755, "d/secret": 0o600, "d/suid": 0o755, "implicit": 0o755, "implicit/f": 0o640}},
		{"zip made on Windows", host.FormatZip, windowsZip(t, "bin/", "bin/tool.exe", "readme.txt", "implicit/f"),
			map[string]fs.FileMode{"bin": 0o755, "bin/tool.exe": 0o644, "readme.txt": 0o644, "implicit": 0o755, "implicit/f": 0o644}},
		{"zip with 0666 and 0777", host.FormatZip, zipBytes(t, []zipEntry{
			{name: "d/", mode: fs.ModeDir | 0o777},
			{name: "d/conf", mode: 0o666, body: "x"},
			{name: "d/run", mode: 0o777, body: "x"},
		}), map[string]fs.FileMode{"d": 0o755, "d/conf": 0o644, "d/run": 0o755}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := unpackInSandbox(t, tt.format, tt.data, testLimits)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.want {
				fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(name)))
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != want&^mask {
					t.Errorf("%s: mode %v, want %v (%v with the umask %03o)", name, got, want&^mask, want, mask)
				}
			}
		})
	}
}

// rawZip is a zip of one stored file whose central directory lists it
// `entries` times under distinct names, all pointing at the same data as
// a zip bomb does, with end records that say `declared` entries (zip64
// records when that does not fit in 16 bits).
func rawZip(entries int, declared uint64) []byte {
	le := binary.LittleEndian
	crc := crc32.ChecksumIEEE([]byte("x"))
	b := le.AppendUint32(nil, 0x04034b50)
	b = le.AppendUint16(b, 20)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0) // stored
	b = le.AppendUint32(b, 0) // time, date
	b = le.AppendUint32(b, crc)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = append(b, "xx"...) // name, data
	dirOffset := len(b)
	for i := range entries {
		name := fmt.Sprintf("%06x", i)
		b = le.AppendUint32(b, 0x02014b50)
		b = le.AppendUint16(b, 3<<8|20) // made on Unix
		b = le.AppendUint16(b, 20)
		b = le.AppendUint16(b, 0)
		b = le.AppendUint16(b, 0)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint32(b, crc)
		b = le.AppendUint32(b, 1)
		b = le.AppendUint32(b, 1)
		b = le.AppendUint16(b, uint16(len(name)))
		b = le.AppendUint32(b, 0)            // extra, comment
		b = le.AppendUint32(b, 0)            // disk, internal attributes
		b = le.AppendUint32(b, 0o100644<<16) // external attributes
		b = le.AppendUint32(b, 0)            // local header offset
		b = append(b, name...)
	}
	dirSize := len(b) - dirOffset
	records16, size32, offset32 := uint16(declared), uint32(dirSize), uint32(dirOffset)
	if declared >= 0xffff {
		end64 := len(b)
		b = le.AppendUint32(b, 0x06064b50)
		b = le.AppendUint64(b, 44)
		b = le.AppendUint16(b, 45)
		b = le.AppendUint16(b, 45)
		b = le.AppendUint64(b, 0) // disks
		b = le.AppendUint64(b, declared)
		b = le.AppendUint64(b, declared)
		b = le.AppendUint64(b, uint64(dirSize))
		b = le.AppendUint64(b, uint64(dirOffset))
		b = le.AppendUint32(b, 0x07064b50)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint64(b, uint64(end64))
		b = le.AppendUint32(b, 1)
		records16, size32, offset32 = 0xffff, 0xffffffff, 0xffffffff
	}
	b = le.AppendUint32(b, 0x06054b50)
	b = le.AppendUint32(b, 0) // disks
	b = le.AppendUint16(b, records16)
	b = le.AppendUint16(b, records16)
	b = le.AppendUint32(b, size32)
	b = le.AppendUint32(b, offset32)
	return le.AppendUint16(b, 0)
}

// longNames are entries whose names take about 650 bytes each.
func longNames(n int) []zipEntry {
	dir := strings.Repeat("a", 200) + "/" + strings.Repeat("b", 200) + "/" + strings.Repeat("c", 200)
	var entries []zipEntry
	for i := range n {
		entries = append(entries, zipEntry{name: fmt.Sprintf("%s/f%03d", dir, i), stored: true})
	}
	return entries
}

// lyingSize is a zip whose directory says its file has 5 bytes; it has 10.
func lyingSize(t testing.TB) []byte {
	data := zipBytes(t, []zipEntry{{name: "f", body: "0123456789", stored: true}})
	i := bytes.LastIndex(data, []byte{0x50, 0x4b, 0x01, 0x02})
	binary.LittleEndian.PutUint32(data[i+24:], 5)
	return data
}

func TestExtractZipDirectoryChecks(t *testing.T) {
	many := make([]zipEntry, 101)
	for i := range many {
		many[i] = zipEntry{name: fmt.Sprintf("f%03d", i), stored: true}
	}
	tests := []struct {
		name    string
		data    []byte
		lim     extractLimits
		wantErr error
		errHas  string
	}{
		{"end record claims 4,000,000 entries", rawZip(3, 4_000_000), testLimits, errTooLarge, "lists 4000000 entries, more than 100"},
		{"101 entries, cap 100", zipBytes(t, many), testLimits, errTooLarge, "lists 101 entries, more than 100"},
		// archive/zip reads headers until one is bad, from the offset in
		// the end record when a header is there, and checks the count
		// modulo 65536 only: this one would cost it 65,541 entries.
		{"the end record says 5 entries of 52 bytes, the directory holds 65,541", func() []byte {
			b := rawZip(65536+5, 5)
			binary.LittleEndian.PutUint32(b[len(b)-10:], 5*52)
			return b
		}(), testLimits, errTooLarge, "holds more than 100 entries"},
		{"directory over its cap", zipBytes(t, longNames(60)), testLimits, errTooLarge, "central directory is"},
		{"end record with a directory size over the cap", func() []byte {
			b := rawZip(1, 1)
			binary.LittleEndian.PutUint32(b[len(b)-10:], 0x7fff0000)
			return b
		}(), testLimits, errTooLarge, "central directory is 2147418112 bytes, more than 30200"},
		{"sizes over max_unpacked_bytes", zipBytes(t, []zipEntry{{name: "a", body: strings.Repeat("x", 600), stored: true}, {name: "b", body: strings.Repeat("x", 600), stored: true}}),
			extractLimits{maxBytes: 1000, maxEntries: 10}, errTooLarge, "max_unpacked_bytes"},
		{"a directory with data", func() []byte {
			b := zipBytes(t, []zipEntry{{name: "d/", mode: fs.ModeDir | 0o755}})
			i := bytes.LastIndex(b, []byte{0x50, 0x4b, 0x01, 0x02})
			binary.LittleEndian.PutUint32(b[i+24:], 3)
			return b
		}(), testLimits, errBadInput, "a directory with 3 bytes"},
		{"not a zip", []byte("plain text, long enough to hold an end record"), testLimits, errBadInput, "not a zip file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			dir, err := unpackInSandbox(t, host.FormatZip, tt.data, tt.lim)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("got %v, want %v containing %q", err, tt.wantErr, tt.errHas)
			}
			// Refused from the directory alone: nothing was written, and
			// no time was spent on what the directory lists.
			if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
				t.Fatalf("the refused zip left %d entries (%v)", len(entries), err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refusing took %v", d)
			}
		})
	}
	// A directory can lie about a size; the bytes are counted as written.
	if _, err := unpackInSandbox(t, host.FormatZip, lyingSize(t), testLimits); !errors.Is(err, errBadInput) || !strings.Contains(err.Error(), "damaged archive at f") {
		t.Fatalf("a size the directory lies about: got %v", err)
	}
}

// gunzip is the tar inside a tar.gz.
func gunzip(t testing.TB, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gzipOf is a gzip stream with one member per part.
func gzipOf(t testing.TB, parts ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, p := range parts {
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestExtractDamagedTarGz(t *testing.T) {
	entries := []tarEntry{{name: "a", body: "first"}, {name: "b", body: strings.Repeat("b", 700)}}
	whole := tarGz(t, entries)
	tarball := gunzip(t, whole) // archive/tar writes two zero blocks at the end
	if !bytes.Equal(tarball[len(tarball)-1024:], make([]byte, 1024)) {
		t.Fatal("the test tar does not end with two zero blocks")
	}
	body := tarball[:len(tarball)-1024]
	withCRC := func(data []byte, crc uint32) []byte {
		d := bytes.Clone(data)
		binary.LittleEndian.PutUint32(d[len(d)-8:], crc)
		return d
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr error // nil: must succeed
		errHas  string
	}{
		{"whole", whole, nil, ""},
		{"one zero block, then the end", gzipOf(t, tarball[:len(tarball)-512]), nil, ""},
		{"zero padding after the end marker", gzipOf(t, append(bytes.Clone(tarball), make([]byte, 9216)...)), nil, ""},
		{"two gzip members", gzipOf(t, tarball[:1000], tarball[1000:]), nil, ""},
		{"cut at an entry boundary", gzipOf(t, body), errBadInput, `truncated archive: the tar ends after entry "b" without its end marker`},
		{"cut at the first entry", gzipOf(t, body[:1024]), errBadInput, `truncated archive: the tar ends after entry "a"`},
		{"cut inside an entry", gzipOf(t, body[:1836]), errBadInput, `truncated archive: it ends in the middle of its data (in entry "b")`},
		{"empty gzip", gzipOf(t, nil), errBadInput, "truncated archive: the tar ends at its start"},
		{"wrong gzip CRC", withCRC(whole, crc32.ChecksumIEEE(tarball)+1), errBadInput, "gzip checksum"},
		{"gzip trailer cut", whole[:len(whole)-8], errBadInput, "truncated archive"},
		{"half the gzip trailer", whole[:len(whole)-3], errBadInput, "truncated archive"},
		{"garbage after the gzip stream", append(bytes.Clone(whole), "garbage after the gzip member"...), errBadInput, "data after the end of the gzip stream"},
		{"a second tar after the end marker", gzipOf(t, append(bytes.Clone(tarball), tarball...)), errBadInput, "data after the tar end marker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := unpackInSandbox(t, host.FormatTarGz, tt.data, testLimits)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if b, err := os.ReadFile(filepath.Join(dir, "b")); err != nil || len(b) != 700 {
					t.Fatalf("b: %d bytes, %v", len(b), err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("got %v, want %v containing %q", err, tt.wantErr, tt.errHas)
			}
			// Refused by the first pass, before anything was written.
			if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
				t.Fatalf("the refused archive left %d entries (%v)", len(entries), err)
			}
		})
	}
}

func TestExtractConflicts(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		errHas  string
	}{
		{"directory then file", []tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "d", body: "x"}},
			`"d": appears twice in the archive (a file where an earlier entry made a directory)`},
		{"file then directory", []tarEntry{{name: "f", body: "x"}, {name: "f/", typ: tar.TypeDir}},
			`"f/": appears twice in the archive (a directory where an earlier entry made a file)`},
		{"file then a file below it", []tarEntry{{name: "f", body: "x"}, {name: "f/x", body: "x"}},
			`"f/x": below f, which an earlier entry made a file`},
		{"implicit directory then file", []tarEntry{{name: "d/x", body: "x"}, {name: "d", body: "x"}},
			`"d": appears twice in the archive (a file where an earlier entry made a directory)`},
		{"symlink then directory", []tarEntry{{name: "l", typ: tar.TypeSymlink, linkname: "."}, {name: "l/", typ: tar.TypeDir}},
			`"l/": appears twice in the archive (a directory where an earlier entry made a symlink)`},
		{"file then symlink", []tarEntry{{name: "f", body: "x"}, {name: "f", typ: tar.TypeSymlink, linkname: "."}},
			`"f": appears twice in the archive (a symlink where an earlier entry made a file)`},
		{"file then hard link", []tarEntry{{name: "f", body: "x"}, {name: "g", body: "y"}, {name: "f", typ: tar.TypeLink, linkname: "g"}},
			`"f": appears twice in the archive (a hard link where an earlier entry made a file)`},
		{"hard link through a symlink", []tarEntry{{name: "d/f", body: "x"}, {name: "l", typ: tar.TypeSymlink, linkname: "d"}, {name: "h", typ: tar.TypeLink, linkname: "l/f"}},
			"the target is not a file earlier in this archive"},
		{"hard link to a directory", []tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "h", typ: tar.TypeLink, linkname: "d"}},
			"the target is not a file earlier in this archive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := unpackInSandbox(t, host.FormatTarGz, tarGz(t, tt.entries), testLimits)
			if !errors.Is(err, errUnsafe) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("got %v, want errUnsafe containing %q", err, tt.errHas)
			}
		})
	}
}

func TestExtractNamesAndCounts(t *testing.T) {
	deep := strings.Repeat("d/", 60) + "f" // 60 directories for one entry
	tests := []struct {
		name    string
		entries []tarEntry
		wantErr error
		errHas  string
	}{
		{"a name over 4096 bytes", []tarEntry{{name: strings.Repeat("a/", 2048) + "ab", body: "x"}}, errUnsafe, "a name of 4098 bytes, more than 4096"},
		{"a component over 255 bytes", []tarEntry{{name: strings.Repeat("a", 256), body: "x"}}, errUnsafe, "a path component of 256 bytes"},
		{"directories made for an entry count", []tarEntry{{name: deep, body: "x"}}, errTooLarge, "more than 50 entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := unpackInSandbox(t, host.FormatTarGz, tarGz(t, tt.entries), extractLimits{maxBytes: 1 << 20, maxEntries: 50})
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("got %v, want %v containing %q", err, tt.wantErr, tt.errHas)
			}
		})
	}
}

// TestUploadArchiveRefusals sends refused archives through the API: a
// conflict is 400 naming the entry (it was 500), a damaged archive 400, a
// zip bomb's directory 413, and nothing is kept.
func TestUploadArchiveRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	auth := "Bearer " + f.agent.Token()
	tests := []struct {
		name   string
		format string
		body   []byte
		status int
		code   string
		has    string
	}{
		{"tar: directory then file", "tar.gz", tarGz(t, []tarEntry{{name: "app/", typ: tar.TypeDir}, {name: "app", body: "x"}}),
			400, codeUnsafe, `"app": appears twice in the archive (a file where an earlier entry made a directory)`},
		{"tar: file then directory", "tar.gz", tarGz(t, []tarEntry{{name: "app", body: "x"}, {name: "app/", typ: tar.TypeDir}}),
			400, codeUnsafe, `"app/": appears twice in the archive (a directory where an earlier entry made a file)`},
		{"zip: directory then file", "zip", zipBytes(t, []zipEntry{{name: "app/", mode: fs.ModeDir | 0o755}, {name: "app", body: "x"}}),
			400, codeUnsafe, `"app": appears twice in the archive (a file where an earlier entry made a directory)`},
		{"zip: file then directory", "zip", zipBytes(t, []zipEntry{{name: "app", body: "x"}, {name: "app/", mode: fs.ModeDir | 0o755}}),
			400, codeUnsafe, `"app/": appears twice in the archive (a directory where an earlier entry made a file)`},
		{"tar cut at an entry boundary", "tar.gz", gzipOf(t, func() []byte { b := gunzip(t, helloArtifact(t)); return b[:len(b)-1024] }()),
			400, codeBadInput, `truncated archive: the tar ends after entry "hello" without its end marker`},
		{"zip claiming 4,000,000 entries", "zip", rawZip(3, 4_000_000), 413, codeTooLarge, "the zip lists 4000000 entries, more than 200000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Authorization": auth, SpecHeader: specHeader(t)}
			resp, eb := f.raw("PUT", "/v1/releases/v1?format="+tt.format+"&sha256="+sha(tt.body), bytes.NewReader(tt.body), h)
			if resp.StatusCode != tt.status || eb.Code != tt.code || !strings.Contains(eb.Error, tt.has) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", resp.StatusCode, eb.Code, eb.Error, tt.status, tt.code, tt.has)
			}
			if got := f.stored(); len(got) > 0 {
				t.Fatalf("a refused upload left %v", got)
			}
		})
	}
}
