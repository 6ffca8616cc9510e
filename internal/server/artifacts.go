package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zerodown/zerodown/internal/atomicfile"
	"github.com/zerodown/zerodown/internal/server/api"
)

// artifacts keeps uploaded artifacts by content: <dir>/<sha256>/<name>. An
// artifact is uploaded once and reused by every run of it — a promotion, a
// rollback, a resume on another replica (dir is shared by replicas).
type artifacts struct {
	dir string
	max int64
}

func newArtifacts(dir string, max int64) (*artifacts, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("artifact directory: %w", err)
	}
	return &artifacts{dir: dir, max: max}, nil
}

func checkSHA(sha string) error {
	if len(sha) != 64 || strings.Trim(sha, "0123456789abcdef") != "" {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "%q is not a sha256 (64 lowercase hex digits)", sha)
	}
	return nil
}

// checkName keeps an artifact's name a plain file name: its suffix says
// its format (.tar.gz, .tgz, .zip, or a single file).
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 200 || strings.ContainsAny(name, "/\\\x00") {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "artifact name %q: give the file's name, such as app.tar.gz (?name=)", name)
	}
	return nil
}

// path returns the stored artifact with that sha256.
func (a *artifacts) path(sha string) (string, error) {
	if err := checkSHA(sha); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(filepath.Join(a.dir, sha))
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			return filepath.Join(a.dir, sha, e.Name()), nil
		}
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	return "", errorf(http.StatusNotFound, api.CodeNotFound, "no artifact %s on this server: upload it first (PUT /api/v1/artifacts/%s?name=FILE)", sha, sha)
}

func (s *Server) headArtifact(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.arts.path(r.PathValue("sha256"))
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			w.WriteHeader(he.status) // HEAD: no body
			return nil
		}
		return err
	}
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	w.Header().Set("X-Artifact-Name", filepath.Base(p))
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	w.WriteHeader(http.StatusOK)
	return nil
}

// putArtifact stores the body as the artifact named by its sha256: the
// bytes are hashed as they are written, and kept only if they hash to it.
// Uploading one that is there already reads nothing and answers 200.
func (s *Server) putArtifact(w http.ResponseWriter, r *http.Request, c *caller) error {
	sha, name := r.PathValue("sha256"), r.URL.Query().Get("name")
	if err := checkSHA(sha); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	if p, err := s.arts.path(sha); err == nil {
		writeJSON(w, http.StatusOK, s.arts.describe(sha, p))
		return nil
	}
	if r.ContentLength > s.arts.max {
		return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "artifact of %d bytes: this server takes at most %d (max_artifact_bytes)", r.ContentLength, s.arts.max)
	}
	dir := filepath.Join(s.arts.dir, sha)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	h := sha256.New()
	body := http.MaxBytesReader(w, r.Body, s.arts.max)
	var n int64
	err := atomicfile.WriteFunc(filepath.Join(dir, name), 0o640, func(f io.Writer) error {
		var err error
		n, err = io.Copy(io.MultiWriter(f, h), body)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return errorf(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "artifact larger than %d bytes (max_artifact_bytes)", s.arts.max)
			}
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "upload cut short: %v", err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != sha {
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "the upload hashes to %s, not %s: nothing kept", got, sha)
		}
		if n == 0 {
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "the upload is empty")
		}
		return nil
	})
	if err != nil {
		_ = os.Remove(dir) // only if nothing else is in it
		return err
	}
	s.audit(r.Context(), r, c.name(), "artifact.upload", sha, fmt.Sprintf("%s, %d bytes", name, n))
	writeJSON(w, http.StatusCreated, api.Artifact{SHA256: sha, Name: name, Size: n})
	return nil
}

func (a *artifacts) describe(sha, p string) api.Artifact {
	out := api.Artifact{SHA256: sha, Name: filepath.Base(p)}
	if st, err := os.Stat(p); err == nil {
		out.Size = st.Size()
	}
	return out
}
