package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.yaml")
	cfg, err := ParseServer(path, []byte("deploy: zerodown.yaml\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != DefaultServerListen || cfg.Deploy != filepath.Join(dir, "zerodown.yaml") ||
		cfg.Data != filepath.Join(dir, DefaultServerData) || cfg.Artifacts != filepath.Join(dir, DefaultServerData, "artifacts") ||
		time.Duration(cfg.Lease) != DefaultServerLease || cfg.Postgres != "" {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = ParseServer(path, []byte("listen: 0.0.0.0:7300\ntls: {cert: c.pem, key: k.pem}\ndeploy: /etc/z.yaml\ndata: /var/lib/z\nartifacts: /mnt/a\npostgres: postgres://z@db/z\nsession_key_file: /etc/z/session.key\nlease: 10s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Artifacts != "/mnt/a" || cfg.Data != "/var/lib/z" || time.Duration(cfg.Lease) != 10*time.Second || cfg.Retention != nil {
		t.Fatalf("set: %+v", cfg)
	}
	for doc, keep := range map[string]int{
		"deploy: z.yaml\nretention: {older_than: 2160h}\n":         DefaultRetentionKeep,
		"deploy: z.yaml\nretention: {older_than: 720h, keep: 1}\n": 1,
	} {
		cfg, err := ParseServer(path, []byte(doc))
		if err != nil || cfg.Retention == nil || cfg.Retention.Keep == nil || *cfg.Retention.Keep != keep || cfg.Retention.OlderThan <= 0 {
			t.Errorf("%q: %+v, %v; want retention keeping %d", doc, cfg, err, keep)
		}
	}
	for _, tc := range []struct{ doc, want string }{
		{"listen: 0.0.0.0:7300\ndeploy: z.yaml\n", "server.yaml:1:1: listen: 0.0.0.0:7300 is reachable beyond this machine"},
		{"data: d\n", "server.yaml:1:1: deploy: required"},
		{"deploy: z.yaml\nlease: 1s\n", "server.yaml:2:1: lease: 1s is too short"},
		{"deploy: z.yaml\npostgres: 'mysql:secret@x'\n", "server.yaml:2:1: postgres: not a PostgreSQL connection string"},
		{"deploy: z.yaml\nlistn: x\n", "server.yaml:2:1: listn: unknown"},
		{"deploy: z.yaml\nlease: soon\n", "server.yaml:2:1: lease: invalid duration"},
		{"deploy: z.yaml\npostgres: postgres://x\n", "server.yaml:2:1: postgres: replicas sign dashboard sessions with one key: set session_key_file"},
		{"deploy: z.yaml\nretention: {keep: 5}\n", "server.yaml:2:"},
		{"deploy: z.yaml\nretention: {keep: 5}\n", "retention.older_than: required"},
		{"deploy: z.yaml\nretention:\n  older_than: 2160h\n  keep: -1\n", "server.yaml:4:3: retention.keep: at least 1"},
		{"deploy: z.yaml\nretention: {older_than: 90d}\n", "invalid duration"},
	} {
		_, err := ParseServer("server.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error quotes the connection string: %v", tc.doc, err)
		}
	}
}

func FuzzParseServer(f *testing.F) {
	f.Add([]byte("deploy: z.yaml\n"))
	f.Add([]byte("listen: 0.0.0.0:1\ntls: {cert: a, key: b}\ndeploy: z\npostgres: postgres://x\nsession_key_file: k\nlease: 3s\n"))
	f.Add([]byte("a: &x {b: 1}\nc: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseServer("server.yaml", data)
		if err == nil && (cfg.Deploy == "" || cfg.Data == "" || cfg.Artifacts == "" || time.Duration(cfg.Lease) < minServerLease ||
			cfg.Retention != nil && (cfg.Retention.OlderThan <= 0 || cfg.Retention.Keep == nil || *cfg.Retention.Keep < 1)) {
			t.Fatalf("accepted an incomplete config: %+v", cfg)
		}
	})
}
