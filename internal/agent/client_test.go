package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

func TestNewClient(t *testing.T) {
	tests := []struct {
		name string
		cfg  ClientConfig
		err  string
	}{
		{"ok", ClientConfig{URL: "http://127.0.0.1:7101/", Token: "t"}, ""},
		{"https with a prefix", ClientConfig{URL: "https://agent.example:7101/zd", Token: "t"}, ""},
		{"no url", ClientConfig{Token: "t"}, "agent URL is empty"},
		{"not http", ClientConfig{URL: "ftp://x", Token: "t"}, "want http:// or https://"},
		{"user info", ClientConfig{URL: "http://u:p@x", Token: "t"}, "must not contain user info"},
		{"query", ClientConfig{URL: "http://x/?a=1", Token: "t"}, "query or fragment"},
		{"no token", ClientConfig{URL: "http://x"}, "token is empty"},
		{"token with a space", ClientConfig{URL: "http://x", Token: "a b"}, "spaces or control characters"},
		{"negative timeout", ClientConfig{URL: "http://x", Token: "t", ActivateTimeout: -time.Second}, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.cfg)
			if (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("got %v, want %q", err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "a b") {
				t.Error("the error shows the token")
			}
		})
	}
}

func TestAPIErrorIs(t *testing.T) {
	tests := []struct {
		code string
		is   error
	}{
		{codeNotFound, host.ErrNotFound}, {codeConflict, host.ErrConflict}, {codeBusy, host.ErrBusy},
		{codeFailed, host.ErrUnhealthy}, {codeBroken, host.ErrUnhealthy}, {codeChecksum, host.ErrChecksum},
	}
	all := []error{host.ErrNotFound, host.ErrConflict, host.ErrBusy, host.ErrUnhealthy, host.ErrChecksum}
	for _, tt := range tests {
		err := error(&APIError{Code: tt.code})
		for _, target := range all {
			if got := errors.Is(err, target); got != (target == tt.is) {
				t.Errorf("code %s: errors.Is(%v) = %v", tt.code, target, got)
			}
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key; it returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert, key, pool := selfSigned(t)
	cfg := testConfig(t, func(c *config.Agent) {
		c.TLS = &config.TLS{Cert: cert, Key: key}
		c.Token = strings.Repeat("k", 32)
	})
	a, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c, err := NewClient(ClientConfig{URL: "https://" + a.Addr(), Token: a.Token(), HTTPClient: trusting})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AgentStatus(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("status over TLS: %v", err)
	}
	plain, _ := NewClient(ClientConfig{URL: "http://" + a.Addr(), Token: a.Token()})
	if _, err := plain.AgentStatus(ctxFor(t, 5*time.Second)); err == nil {
		t.Error("plain HTTP to a TLS agent worked")
	}
	untrusting, _ := NewClient(ClientConfig{URL: "https://" + a.Addr(), Token: a.Token()})
	if _, err := untrusting.AgentStatus(ctxFor(t, 5*time.Second)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client that does not trust the certificate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Root, "agent.token")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a configured token was written to a file: %v", err)
	}
	// A broken certificate stops the start, with the files named.
	bad := *cfg
	bad.Root = t.TempDir() // the running agent holds cfg.Root
	bad.TLS = &config.TLS{Cert: key, Key: cert}
	if _, err := New(&bad, Options{}); err == nil || !strings.Contains(err.Error(), "agent.crt") {
		t.Errorf("New with a bad certificate: %v", err)
	}
}
