package sampleapp

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseArgs(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Config
		wantErr string
	}{
		{
			name: "defaults",
			want: Config{Listen: "127.0.0.1:8080", Version: "v0", Name: host, IdleTimeout: 60 * time.Second, ShutdownTimeout: 30 * time.Second},
		},
		{
			name: "environment",
			env:  map[string]string{"PORT": "9001", "VERSION": "v3", "HOST_NAME": "web-1"},
			want: Config{Listen: "127.0.0.1:9001", Version: "v3", Name: "web-1", IdleTimeout: 60 * time.Second, ShutdownTimeout: 30 * time.Second},
		},
		{
			name: "flags beat environment",
			args: []string{"--listen", "127.0.0.1:7000", "--version", "v4", "--name", "n", "--idle-timeout", "1s", "--shutdown-timeout", "2s", "--fail-health", "--unhealthy-file", "/x", "--request-log", "/log"},
			env:  map[string]string{"PORT": "9001", "VERSION": "v3", "HOST_NAME": "web-1"},
			want: Config{Listen: "127.0.0.1:7000", Version: "v4", Name: "n", FailHealth: true, UnhealthyFile: "/x", IdleTimeout: time.Second, ShutdownTimeout: 2 * time.Second, RequestLog: "/log"},
		},
		{
			name: "explicit default listen still beats PORT",
			args: []string{"--listen", "127.0.0.1:8080"},
			env:  map[string]string{"PORT": "9001"},
			want: Config{Listen: "127.0.0.1:8080", Version: "v0", Name: host, IdleTimeout: 60 * time.Second, ShutdownTimeout: 30 * time.Second},
		},
		{name: "bad duration", args: []string{"--idle-timeout", "soon"}, wantErr: "invalid value"},
		{name: "negative idle timeout", args: []string{"--idle-timeout", "-1s"}, wantErr: "must not be negative"},
		{name: "zero shutdown timeout", args: []string{"--shutdown-timeout", "0s"}, wantErr: "must be positive"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgs("hello", tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
