package sampleapp

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Defaults of the command line.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultVersion         = "v0"
	DefaultIdleTimeout     = 60 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
)

// Config is what the app serves and how.
type Config struct {
	// Listen is the address to listen on.
	Listen string
	// Version and Name are reported in every answer.
	Version, Name string
	// FailHealth makes /healthz answer 503, always.
	FailHealth bool
	// UnhealthyFile makes /healthz answer 503 while that file exists.
	UnhealthyFile string
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	ShutdownTimeout time.Duration
	// RequestLog, when set, is a file every POST that carries an
	// X-Request-Id appends a line to as its handler starts (see
	// requestlog.go): a test counts from it how often each request ran, on
	// every host and across restarts of the app.
	RequestLog string
	// ErrorPercent makes that share of the answers to / a 500, spread
	// evenly (every 20th at 5): a release that is bad, but not always.
	ErrorPercent int
}

// ParseArgs reads a command line (without the program name) into a Config,
// falling back to the environment the way platforms that inject PORT,
// VERSION and HOST_NAME expect. prog names the program in usage messages.
// Asked for -help, it prints the usage to stderr and returns flag.ErrHelp.
func ParseArgs(prog string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var cfg Config
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", DefaultListen, "address to listen on; without this flag, 127.0.0.1:$PORT when PORT is set")
	fs.StringVar(&cfg.Version, "version", "", `version reported in answers (default $VERSION, else "`+DefaultVersion+`")`)
	fs.StringVar(&cfg.Name, "name", "", "host name reported in answers (default $HOST_NAME, else the machine's host name)")
	fs.BoolVar(&cfg.FailHealth, "fail-health", false, "answer 503 on /healthz, always")
	fs.StringVar(&cfg.UnhealthyFile, "unhealthy-file", "", "answer 503 on /healthz while this file exists")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", DefaultIdleTimeout, "close keep-alive connections idle this long")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "on SIGTERM, wait this long for in-flight requests")
	fs.IntVar(&cfg.ErrorPercent, "error-percent", 0, "answer 500 to this percentage of the requests to / (GET and POST), spread evenly")
	fs.StringVar(&cfg.RequestLog, "request-log", "", "append the X-Request-Id of every POST to this file as it starts, to count executions")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.ErrorPercent < 0 || cfg.ErrorPercent > 100 {
		return Config{}, fmt.Errorf("--error-percent %d: want 0 to 100", cfg.ErrorPercent)
	}
	listenSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "listen" {
			listenSet = true
		}
	})
	if port := getenv("PORT"); port != "" && !listenSet {
		cfg.Listen = net.JoinHostPort("127.0.0.1", port)
	}
	if cfg.Version == "" {
		cfg.Version = getenv("VERSION")
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	if cfg.Name == "" {
		cfg.Name = getenv("HOST_NAME")
	}
	if cfg.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return Config{}, fmt.Errorf("no --name and no host name: %w", err)
		}
		cfg.Name = h
	}
	if cfg.IdleTimeout < 0 {
		return Config{}, fmt.Errorf("--idle-timeout must not be negative, got %s", cfg.IdleTimeout)
	}
	if cfg.ShutdownTimeout <= 0 {
		return Config{}, fmt.Errorf("--shutdown-timeout must be positive, got %s", cfg.ShutdownTimeout)
	}
	return cfg, nil
}
