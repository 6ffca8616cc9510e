// Package server is `zerodown server`: the deploy engine as a service. It
// serves the HTTP API (/api/v1) and the dashboard on one port, runs deploys
// itself through internal/deploy — the same implementation as the CLI —
// and shares its journal with other replicas when the store is PostgreSQL:
// a run is executed by the replica that holds its environment's lock (its
// lease), and another replica takes it over when the lease runs out.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

// Options are what New needs.
type Options struct {
	Config *config.Server
	// Deploy is the zerodown.yaml the server deploys; its state path is
	// not used: runs are journaled in Store.
	Deploy *config.Deploy
	Store  store.Store
	Log    *slog.Logger
	// Now is the clock of sessions; time.Now when nil.
	Now func() time.Time
}

// Server is one replica of zerodown server.
type Server struct {
	cfg     *config.Server
	deploy  *config.Deploy
	st      store.Store // notifies hub of every change it makes
	raw     store.Store
	hub     *hub
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	arts    *artifacts
	// sessionKey signs dashboard sessions and their CSRF tokens.
	sessionKey []byte
	looks      *lookCache

	// runCtx is the context of the runs this replica executes; stopRuns
	// ends it after the shutdown's grace.
	runCtx   context.Context
	stopRuns context.CancelFunc
	mu       sync.Mutex
	local    map[string]bool   // runs this replica executes now
	retries  map[string]*retry // takeovers that failed, by run
	closing  bool
	runs     sync.WaitGroup
}

// New builds a server; Serve runs it.
func New(o Options) (*Server, error) {
	if o.Config == nil || o.Deploy == nil || o.Store == nil {
		return nil, errors.New("server: Config, Deploy and Store are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	arts, err := newArtifacts(o.Config.Artifacts, int64(o.Config.MaxArtifactBytes))
	if err != nil {
		return nil, err
	}
	key, err := loadSessionKey(o.Config.SessionKeyFile)
	if err != nil {
		return nil, err
	}
	// Reports go beside the server's data, whatever the deploy config says.
	d := *o.Deploy
	d.State = o.Config.Data + "/state.db"
	s := &Server{cfg: o.Config, deploy: &d, raw: o.Store, hub: newHub(), log: o.Log, now: o.Now,
		metrics: newMetrics(), arts: arts, sessionKey: key, local: map[string]bool{},
		retries: map[string]*retry{}}
	s.st = &notifyingStore{Store: o.Store, hub: s.hub, metrics: s.metrics}
	s.looks = newLookCache(&d)
	s.runCtx, s.stopRuns = context.WithCancel(context.Background())
	return s, nil
}

// Serve serves on ln until ctx ends, then shuts down: no new runs are
// taken, runs in progress get the config's shutdown_timeout to end, then
// they are stopped (and roll back).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.TLS != nil {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLS.Cert, s.cfg.TLS.Key)
		if err != nil {
			return fmt.Errorf("server TLS: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.watchReplicas(bg) }()
	go func() { defer wg.Done(); s.takeOverLoop(bg) }()
	go func() { defer wg.Done(); s.pruneLoop(bg) }()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	stopBG()
	wg.Wait()
	s.waitRuns(time.Duration(s.cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.hub.closeAll() // SSE streams end, so Shutdown does not wait for them
	_ = hs.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// waitRuns waits for this replica's runs to end, stopping them after grace.
func (s *Server) waitRuns(grace time.Duration) {
	done := make(chan struct{})
	go func() { s.runs.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(grace):
		s.log.Warn("shutdown: stopping the runs still going", "after", grace)
		s.stopRuns()
	}
	<-done
}

// Handler is the server's HTTP handler: the API, the dashboard, /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.method+" "+rt.pattern, s.apiHandler(rt))
	}
	mux.Handle("GET /api/v1/openapi.json", http.HandlerFunc(serveOpenAPI))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("GET /metrics", s.apiHandler(route{method: "GET", pattern: "/metrics", role: RoleViewer, h: s.serveMetrics}))
	s.dashboardRoutes(mux)
	return securityHeaders(mux)
}

// securityHeaders sets what every answer carries: no framing, no sniffing,
// no resource from elsewhere (the dashboard needs none).
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		h.ServeHTTP(w, r)
	})
}

// route is one endpoint of the API and the least role it needs.
type route struct {
	method, pattern string
	role            Role
	h               func(w http.ResponseWriter, r *http.Request, c *caller) error
}

// httpError is an error with its status and stable code.
type httpError struct {
	status int
	code   string
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func errorf(status int, code, format string, args ...any) error {
	return &httpError{status: status, code: code, err: fmt.Errorf(format, args...)}
}

func (s *Server) apiHandler(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticate(r)
		var ae *authError
		if errors.As(err, &ae) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="zerodown"`)
			writeError(w, &httpError{status: http.StatusUnauthorized, code: api.CodeUnauthorized, err: err})
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if c.role < rt.role {
			writeError(w, &httpError{status: http.StatusForbidden, code: api.CodeForbidden,
				err: fmt.Errorf("token %s has role %s; this needs %s", c.name(), c.role, rt.role)})
			return
		}
		if err := s.checkCSRF(r, c); err != nil {
			writeError(w, &httpError{status: http.StatusForbidden, code: api.CodeCSRF, err: err})
			return
		}
		if err := rt.h(w, r, c); err != nil {
			s.fail(w, r, err)
		}
	})
}

// fail answers an error: an *httpError as it says, what internal/deploy
// refused by its kind, anything else as internal (logged, not shown).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var ie *deploy.InputError
	var re *deploy.RefusedError
	var ae *authError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &ae):
		he = &httpError{status: http.StatusUnauthorized, code: api.CodeUnauthorized, err: err}
	case errors.As(err, &ie):
		he = &httpError{status: http.StatusBadRequest, code: api.CodeBadRequest, err: err}
	case errors.As(err, &re):
		he = &httpError{status: http.StatusConflict, code: api.CodeConflict, err: err}
	case errors.Is(err, store.ErrNotFound):
		he = &httpError{status: http.StatusNotFound, code: api.CodeNotFound, err: err}
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		he = &httpError{status: http.StatusInternalServerError, code: api.CodeInternal, err: errors.New("internal error; the server's log says more")}
	}
	writeError(w, he)
}

func writeError(w http.ResponseWriter, he *httpError) {
	writeJSON(w, he.status, api.Error{Error: api.ErrorBody{Code: he.code, Message: he.err.Error()}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// maxBody bounds a JSON request body.
const maxBody = 1 << 20

// readJSON decodes a request body strictly: unknown fields, trailing data
// and bodies over maxBody are refused with a message saying which.
func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "request body: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "request body: more than one JSON value")
	}
	return nil
}
