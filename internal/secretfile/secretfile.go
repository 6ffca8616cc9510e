// Package secretfile reads a secret — an API token, a signing key — from
// a file, and makes one on first start: 32 random bytes in hex, written
// atomically, readable by its owner only. The agent's API token, the load
// balancer's admin token and the server's session key are all kept so.
package secretfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/zerodown/zerodown/internal/atomicfile"
)

// Load returns the secret in path, without surrounding space. When the
// file does not exist it makes one, creating its directory with dirMode,
// and says so with created. A secret shorter than minLen characters is an
// error naming the file and how to make a good one.
func Load(path string, minLen int, dirMode fs.FileMode) (secret string, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		secret = strings.TrimSpace(string(data))
		if secret == "" {
			return "", false, fmt.Errorf("%s is empty", path)
		}
		if len(secret) < minLen {
			return "", false, fmt.Errorf("%s: %d characters, fewer than %d (make one with: openssl rand -hex 32 > %s)", path, len(secret), minLen, path)
		}
		return secret, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("generate a secret for %s: %w", path, err)
	}
	secret = hex.EncodeToString(b[:])
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return "", false, err
	}
	if err := atomicfile.Write(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return secret, true, nil
}
