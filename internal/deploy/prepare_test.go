package deploy

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb/builtin"
)

// TestReleaseChecksBeforeARun: everything about an artifact that can be
// known locally is bad input, found before a run exists.
func TestReleaseChecksBeforeARun(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("tar bytes"))
	zw.Close()
	var zb bytes.Buffer
	z := zip.NewWriter(&zb)
	z.Close()
	cases := []struct {
		name, path, version string
		format              string
		says                string // "" for accepted
	}{
		{"tar.gz", write("app.tar.gz", gz.Bytes()), "v1", host.FormatTarGz, ""},
		{"tgz", write("app.tgz", gz.Bytes()), "1.4.2+build.7", host.FormatTarGz, ""},
		{"zip", write("app.zip", zb.Bytes()), "v1", host.FormatZip, ""},
		{"single file", write("hello", []byte("#!/bin/sh\n")), "v1", host.FormatFile, ""},
		{"a directory", dir, "v1", "", "not a regular file"},
		{"missing", filepath.Join(dir, "nope.tar.gz"), "v1", "", "no such file"},
		{"empty", write("empty.tar.gz", nil), "v1", "", "is empty"},
		{"not gzip", write("text.tar.gz", []byte("hello\n")), "v1", "", "named like a tar.gz but is not one"},
		{"not zip", write("text.zip", []byte("hello\n")), "v1", "", "named like a zip but is not one"},
		{"version with a space", write("ok.tar.gz", gz.Bytes()), "v 6", "", `version "v 6"`},
		{"version with a slash", write("ok2.tar.gz", gz.Bytes()), "../v6", "", `version "../v6"`},
		{"version ending in .tmp", write("ok3.tar.gz", gz.Bytes()), "v6.tmp", "", "must not end in .tmp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Release(c.path, c.version, config.App{})
			if c.says == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r.Format != c.format || len(r.SHA256) != 64 || r.Size == 0 {
					t.Fatalf("release %+v", r)
				}
				return
			}
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want bad input saying %q", err, c.says)
			}
		})
	}
}

// TestRefusedTokensAreBadInput: a 401 or 403 from an agent or the load
// balancer is the user's to fix, and says "token".
func TestRefusedTokensAreBadInput(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&agent.APIError{Call: "status", Status: 401, Message: "missing or wrong token"}, true},
		{&agent.APIError{Call: "status", Status: 403, Message: "forbidden"}, true},
		{&builtin.APIError{Call: "list", Status: 401, Message: "unauthorized"}, true},
		{&agent.APIError{Call: "activate", Status: 422, Message: "failed"}, false},
		{fmt.Errorf("wrapped: %w", &builtin.APIError{Status: 403}), true},
		{errors.New("connection refused"), false},
	}
	for _, c := range cases {
		err := classify("host a", c.err)
		var ie *InputError
		if got := errors.As(err, &ie); got != c.want {
			t.Fatalf("%v: bad input %v, want %v", c.err, got, c.want)
		}
		if c.want && !strings.Contains(err.Error(), "token") {
			t.Fatalf("%v: message %q does not say token", c.err, err)
		}
	}
}

// Under blue-green each HAProxy backend's driver knows only its own
// pool's servers: the same server name may be in each backend.
func TestServerNamesPerBackend(t *testing.T) {
	env := &config.Environment{Strategy: config.Strategy{BlueGreen: &config.BlueGreen{Pools: []string{"blue", "green"}}}, Hosts: []config.Host{
		{Name: "blue-1", Pool: "blue", Target: "10.0.0.1:80", Server: "app"},
		{Name: "green-1", Pool: "green", Target: "10.0.0.2:80", Server: "app"},
	}}
	for backend, want := range map[string]map[string]string{
		"blue":  {"10.0.0.1:80": "app"},
		"green": {"10.0.0.2:80": "app"},
	} {
		if got := serverNames(env, backend); !maps.Equal(got, want) {
			t.Errorf("backend %s: %v, want %v", backend, got, want)
		}
	}
	env.Strategy = config.Strategy{}
	if got := serverNames(env, "app"); len(got) != 2 {
		t.Errorf("rolling: %v, want both hosts", got)
	}
}
