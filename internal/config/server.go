package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Server is the configuration of `zerodown server` (docs/server.md): where
// it listens, the zerodown.yaml whose environments it deploys, where it
// keeps artifacts and reports, and its journal (SQLite by default,
// PostgreSQL for several replicas). A config from LoadServer or ParseServer
// is complete: defaults are filled in and relative paths resolved.
type Server struct {
	// Path is the file the config was read from; set by LoadServer.
	Path string `yaml:"-"`

	Listen string `yaml:"listen"`
	TLS    *TLS   `yaml:"tls"`
	// AllowPlaintext lets the server listen beyond loopback without TLS,
	// behind a proxy that terminates TLS.
	AllowPlaintext bool `yaml:"allow_plaintext"`

	// Deploy is the zerodown.yaml of the environments the server deploys.
	Deploy string `yaml:"deploy"`
	// Data holds the SQLite journal (when no PostgreSQL is set) and the
	// verifier's reports.
	Data string `yaml:"data"`
	// Artifacts holds uploaded artifacts by sha256. Replicas share it (a
	// network file system), so any replica can resume another's run.
	Artifacts string `yaml:"artifacts"`
	// MaxArtifactBytes bounds one upload.
	MaxArtifactBytes ByteSize `yaml:"max_artifact_bytes"`

	// Postgres is the connection string of a PostgreSQL database shared
	// by replicas; empty keeps the journal in SQLite under Data.
	Postgres string `yaml:"postgres"`
	// Lease is how long a replica's claim on a run lasts without a
	// heartbeat; past it another replica takes the run over.
	Lease Duration `yaml:"lease"`
	// SessionTTL is how long a dashboard sign-in lasts.
	SessionTTL Duration `yaml:"session_ttl"`
	// SessionKeyFile holds the key that signs dashboard sessions: made on
	// first start when missing (<data>/session.key); replicas need the
	// same one, so with postgres it must be set.
	SessionKeyFile string `yaml:"session_key_file"`
	// ShutdownTimeout bounds how long SIGTERM waits for runs in progress
	// before it stops them (a stopped run rolls back).
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Retention, when set, prunes old runs from the journal on start and
	// every hour; without it the journal keeps every run.
	Retention *Retention `yaml:"retention"`
}

// Retention is how long runs stay in the journal (`zerodown history prune`).
type Retention struct {
	// OlderThan: runs that ended longer ago go.
	OlderThan Duration `yaml:"older_than"`
	// Keep is how many of each environment's newest runs stay whatever
	// their age; default DefaultRetentionKeep.
	Keep *int `yaml:"keep"`
}

// Defaults of server.yaml.
const (
	DefaultServerListen          = "127.0.0.1:7300"
	DefaultServerData            = "zerodown-server"
	DefaultServerMaxArtifact     = 2 << 30
	DefaultServerLease           = 15 * time.Second
	DefaultServerSessionTTL      = 12 * time.Hour
	DefaultServerShutdownTimeout = 10 * time.Minute
	minServerLease               = 3 * time.Second
	DefaultRetentionKeep         = 10
)

// LoadServer reads and parses the server config at path; see ParseServer.
func LoadServer(path string) (*Server, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read server config: %w", err)
	}
	return ParseServer(path, data)
}

// ParseServer parses a server config the way ParseLB parses lb.yaml: ${VAR}
// from the environment, strict keys and types, defaults, validation, every
// problem with file:line:col. Relative paths are relative to the file.
func ParseServer(path string, data []byte) (*Server, error) {
	cfg, c, err := parseConfig[Server](path, data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	paths := newPathResolver(path)
	orDefault(&cfg.Listen, DefaultServerListen)
	orDefault(&cfg.Data, DefaultServerData)
	cfg.Data = paths.resolve(cfg.Data)
	orDefault(&cfg.Artifacts, filepath.Join(cfg.Data, "artifacts"))
	cfg.Artifacts = paths.resolve(cfg.Artifacts)
	sessionKeySet := cfg.SessionKeyFile != ""
	orDefault(&cfg.SessionKeyFile, filepath.Join(cfg.Data, "session.key"))
	cfg.SessionKeyFile = paths.resolve(cfg.SessionKeyFile)
	cfg.Deploy = paths.resolve(cfg.Deploy)
	orDefault(&cfg.MaxArtifactBytes, DefaultServerMaxArtifact)
	orDefault(&cfg.Lease, Duration(DefaultServerLease))
	orDefault(&cfg.SessionTTL, Duration(DefaultServerSessionTTL))
	orDefault(&cfg.ShutdownTimeout, Duration(DefaultServerShutdownTimeout))

	v := &validator{c: c}
	lp := c.key("", "listen")
	listen, err := listenAddr(cfg.Listen)
	if err != nil {
		v.errorf(lp, "%v", err)
	} else if !loopbackHost(listen) && cfg.TLS == nil && !cfg.AllowPlaintext {
		v.errorf(lp, "%s is reachable beyond this machine: set tls (cert and key), or allow_plaintext: true behind a proxy that terminates TLS", cfg.Listen)
	}
	v.tls(c.key("", "tls"), cfg.TLS)
	if cfg.Deploy == "" {
		v.errorf(c.key("", "deploy"), "required: the zerodown.yaml of the environments this server deploys")
	}
	if cfg.Postgres != "" && !strings.HasPrefix(cfg.Postgres, "postgres://") && !strings.HasPrefix(cfg.Postgres, "postgresql://") &&
		!strings.Contains(cfg.Postgres, "=") {
		// Never quote it: it may hold a password.
		v.errorf(c.key("", "postgres"), "not a PostgreSQL connection string (postgres://user@host:5432/db, or key=value pairs)")
	}
	if cfg.Postgres != "" && !sessionKeySet {
		v.errorf(c.key("", "postgres"), "replicas sign dashboard sessions with one key: set session_key_file to a file every replica reads (openssl rand -hex 32)")
	}
	if r := cfg.Retention; r != nil {
		if r.OlderThan <= 0 {
			v.errorf(c.key("retention", "older_than"), "required, a positive duration such as 2160h (90 days): runs older than it are pruned")
		}
		if r.Keep == nil {
			keep := DefaultRetentionKeep
			r.Keep = &keep
		} else if *r.Keep < 1 {
			v.errorf(c.key("retention", "keep"), "at least 1 (each environment's newest run is what promote and rollback read), got %d", *r.Keep)
		}
	}
	if time.Duration(cfg.Lease) < minServerLease {
		v.errorf(c.key("", "lease"), "%s is too short: heartbeats every third of it must reach the database (at least %s)", cfg.Lease, minServerLease)
	}
	if len(v.errs) > 0 {
		return nil, v.errs.sorted()
	}
	return cfg, nil
}
