package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	made := filepath.Join(dir, "new", "api.token")
	secret, created, err := Load(made, 32, 0o750)
	if err != nil || !created || len(secret) != 64 || strings.Trim(secret, "0123456789abcdef") != "" {
		t.Fatalf("Load of a missing file = %q, created %v, %v; want 64 hex digits, created", secret, created, err)
	}
	fi, err := os.Stat(made)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the made file: %v, %v; want mode 0600", fi, err)
	}
	again, created, err := Load(made, 32, 0o750)
	if err != nil || created || again != secret {
		t.Fatalf("Load again = %q, created %v, %v; want the same secret, not made", again, created, err)
	}
	if other, _, _ := Load(filepath.Join(dir, "other.token"), 32, 0o750); other == secret {
		t.Error("two files made the same secret")
	}

	for _, tc := range []struct {
		name, content, want string
	}{
		{"kept as written, without its newline", "  my-own-secret-0123456789abcdef-0123\n", ""},
		{"empty", "\n", "is empty"},
		{"too short", "short\n", "5 characters, fewer than 32 (make one with: openssl rand -hex 32 > "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, created, err := Load(path, 32, 0o750)
			switch {
			case tc.want == "" && (err != nil || created || got != strings.TrimSpace(tc.content)):
				t.Errorf("Load = %q, created %v, %v; want %q", got, created, err, strings.TrimSpace(tc.content))
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path)):
				t.Errorf("Load = %q, %v; want an error naming the file and saying %q", got, err, tc.want)
			}
		})
	}
	if _, _, err := Load(dir, 32, 0o750); err == nil {
		t.Error("Load of a directory succeeded")
	}
}
