package agent

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	return [][]byte{
		tarGz(t, []tarEntry{{name: "ok/", typ: tar.TypeDir}, {name: "ok/f", body: "x"}, {name: "ok/l", typ: tar.TypeSymlink, linkname: "f"}, {name: "ok/h", typ: tar.TypeLink, linkname: "ok/f"}}),
		tarGz(t, []tarEntry{{name: "../evil", body: "x"}}),
		tarGz(t, []tarEntry{{name: "/abs/evil", body: "x"}}),
		tarGz(t, []tarEntry{{name: "l", typ: tar.TypeSymlink, linkname: "/"}, {name: "l/evil", body: "x"}}),
		tarGz(t, []tarEntry{{name: "l", typ: tar.TypeSymlink, linkname: ".."}, {name: "l/evil", body: "x"}}),
		tarGz(t, []tarEntry{{name: "a/b/s", typ: tar.TypeSymlink, linkname: "../.."}, {name: "a/b/s/t", typ: tar.TypeSymlink, linkname: "../x"}}),
		tarGz(t, []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "/etc/passwd"}}),
		tarGz(t, []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "../artifact"}}),
		tarGz(t, []tarEntry{{name: `a\..\..\evil`, body: "x"}}),
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
	}
}

func fuzzExtract(f *testing.F, format string, seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever the archive, nothing lands outside the release
		// directory and no symlink in it points out (checkContained).
		_, _ = unpackInSandbox(t, format, data, extractLimits{maxBytes: 1 << 20, maxEntries: 1000})
	})
}

func FuzzExtractTarGz(f *testing.F) { fuzzExtract(f, host.FormatTarGz, seedTars(f)) }

func FuzzExtractZip(f *testing.F) { fuzzExtract(f, host.FormatZip, seedZips(f)) }
