package demo

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Invocation describes the running zerodown, so that the commands the demo
// prints run as shown when pasted into the shell it was started from.
type Invocation struct {
	// Exe is the running executable, symlinks resolved.
	Exe string
	// Dir is the working directory the commands will run in.
	Dir string
	// OnPath is what "zerodown" on PATH resolves to, symlinks resolved; ""
	// when there is none.
	OnPath string
	// GoCache is the go command's build cache; "" when unknown.
	GoCache string
	// Source is the zerodown source tree the executable was compiled from
	// (a module cache directory for `go run ...@version`); "" when unknown,
	// as with -trimpath.
	Source string
	// Tree is the zerodown source tree that holds Dir; "" when none does.
	Tree string
}

// ThisInvocation describes the running process.
func ThisInvocation() (Invocation, error) {
	exe, err := os.Executable()
	if err != nil {
		return Invocation{}, err
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	dir, err := os.Getwd()
	if err != nil {
		return Invocation{}, err
	}
	inv := Invocation{Exe: exe, Dir: dir, GoCache: os.Getenv("GOCACHE"), Tree: SourceTree(dir)}
	if p, err := exec.LookPath("zerodown"); err == nil {
		if p, err = filepath.Abs(p); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				inv.OnPath = r
			}
		}
	}
	// This file's compile-time path, without -trimpath, is
	// <root>/internal/demo/invoke.go.
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		if SourceTree(root) == root {
			inv.Source = root
		}
	}
	return inv, nil
}

// Command returns the words that start this zerodown. An executable that
// `go run` built lives in a temporary directory the go command deletes when
// it exits, so for it the words are a go run of the same source: `go run
// ./cmd/zerodown` relative to Dir when Dir is inside that tree, `go -C
// <tree> run ./cmd/zerodown` when it is not, `go run
// github.com/zerodown/zerodown/cmd/zerodown@<version>` for a module cache
// copy. Any other executable is "zerodown" when that is what PATH finds,
// else its absolute path.
func (inv Invocation) Command() []string {
	if inv.goRunBuild() {
		root := inv.Source
		if root == "" {
			root = inv.Tree
		}
		if name, version, ok := strings.Cut(filepath.Base(root), "@"); ok && name == filepath.Base(modulePath) && version != "" {
			return []string{"go", "run", modulePath + "/cmd/zerodown@" + version}
		}
		if root != "" {
			if within(root, inv.Dir) {
				if pkg, err := filepath.Rel(inv.Dir, filepath.Join(root, "cmd", "zerodown")); err == nil {
					// A package path relative to the working directory
					// starts with ./ or ../ for the go command.
					if pkg = filepath.ToSlash(pkg); pkg != "." && pkg != ".." && !strings.HasPrefix(pkg, "../") {
						pkg = "./" + pkg
					}
					return []string{"go", "run", pkg}
				}
			}
			return []string{"go", "-C", root, "run", "./cmd/zerodown"}
		}
	}
	if inv.OnPath != "" && inv.OnPath == inv.Exe {
		return []string{"zerodown"}
	}
	return []string{inv.Exe}
}

// Line is a shell command line that runs this zerodown with args, each
// word quoted for a POSIX shell when it needs it.
func (inv Invocation) Line(args ...string) string {
	words := append(inv.Command(), args...)
	for i, w := range words {
		words[i] = shellQuote(w)
	}
	return strings.Join(words, " ")
}

// goRunBuild reports whether Exe is a binary the go command built for `go
// run`: in one of its go-build* temporary directories, or in its build
// cache (whose default location, …/go-build, matches the first rule).
func (inv Invocation) goRunBuild() bool {
	dir := filepath.Dir(inv.Exe)
	if inv.GoCache != "" && within(inv.GoCache, dir) {
		return true
	}
	for _, elem := range strings.Split(filepath.ToSlash(dir), "/") {
		if strings.HasPrefix(elem, "go-build") {
			return true
		}
	}
	return false
}

// within reports whether path is base or below it.
func within(base, path string) bool {
	rel, err := filepath.Rel(base, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// shellQuote quotes w for a POSIX shell unless it is made only of
// characters that need no quoting.
func shellQuote(w string) string {
	if w == "" {
		return "''"
	}
	safe := true
	for _, r := range w {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r)) {
			safe = false
			break
		}
	}
	if safe {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
