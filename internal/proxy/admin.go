package proxy

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zerodown/zerodown/internal/config"
)

// Admin API limits and defaults.
const (
	maxAdminBody       = 64 << 10
	defaultWaitTimeout = 30 * time.Second
	maxWaitTimeout     = time.Hour
)

// AttachRequest is the body of POST /v1/pools/{pool}/attach.
type AttachRequest struct {
	Target  string `json:"target"`
	Weight  *int   `json:"weight,omitempty"`
	Wait    bool   `json:"wait,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

// DetachRequest is the body of POST /v1/pools/{pool}/detach.
type DetachRequest struct {
	Target  string `json:"target"`
	Wait    bool   `json:"wait,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

// WeightRequest is the body of POST /v1/pools/{pool}/weight.
type WeightRequest struct {
	Target string `json:"target"`
	Weight *int   `json:"weight"`
}

// SwitchRequest is the body of POST /v1/switch: send the routes configured
// for pool From to pool To (To == From puts them back).
type SwitchRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Force switches even to a pool with no healthy target: a preview
	// route may point at a pool that serves nothing yet.
	Force bool `json:"force,omitempty"`
}

// SwitchesView answers GET /v1/switches and POST /v1/switch.
type SwitchesView struct {
	// Switches maps a pool named in routes to the pool they go to now.
	Switches map[string]string `json:"switches"`
	// SwitchMillis is how long the switch took, for POST.
	SwitchMillis float64 `json:"switch_ms,omitempty"`
}

// DecodeSwitch reads and checks a POST /v1/switch body.
func DecodeSwitch(r io.Reader) (SwitchRequest, error) {
	var req SwitchRequest
	if err := decodeJSON(r, &req); err != nil {
		return req, err
	}
	if req.From == "" || req.To == "" {
		return req, errors.New(`want {"from": POOL, "to": POOL}`)
	}
	return req, nil
}

// UpgradeResult answers POST /v1/upgrade: a new process serves on the same
// sockets, and this one is finishing its requests.
type UpgradeResult struct {
	// HandoverMillis is the time from the call to the new process serving.
	HandoverMillis float64 `json:"handover_ms"`
}

// poolView is what GET /v1/pools/{pool} answers.
type poolView struct {
	Name        string `json:"name"`
	Balance     string `json:"balance"`
	FailOpen    bool   `json:"fail_open"`    // configured
	FailingOpen bool   `json:"failing_open"` // now: no healthy target, sending to all
	// DeregistrationDelayMillis bounds a detached target's drain.
	DeregistrationDelayMillis int64      `json:"deregistration_delay_ms"`
	Targets                   []snapshot `json:"targets"`
}

// decodeJSON reads exactly one JSON object with only known fields.
func decodeJSON(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, maxAdminBody+1))
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if len(data) > maxAdminBody {
		return fmt.Errorf("body is larger than %d bytes", maxAdminBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("body is empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body is not valid JSON for this call: %w", err)
	}
	if dec.More() {
		return errors.New("body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("body has data after the JSON object")
	}
	return nil
}

// validTarget checks a target address and returns its canonical spelling,
// the same the config loader uses.
func validTarget(addr string) (string, error) {
	if addr == "" {
		return "", errors.New(`"target" is required, as "ip:port"`)
	}
	return config.NormalizeTarget(addr)
}

func validWeight(w *int) error {
	if w != nil && (*w < 0 || *w > config.MaxWeight) {
		return fmt.Errorf("weight %d is out of range 0-%d", *w, config.MaxWeight)
	}
	return nil
}

func waitTimeout(wait bool, s string) (time.Duration, error) {
	if s == "" {
		return defaultWaitTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("timeout %q is not a duration such as 30s", s)
	}
	if d <= 0 || d > maxWaitTimeout {
		return 0, fmt.Errorf("timeout %s is out of range (0, %s]", d, maxWaitTimeout)
	}
	if !wait {
		return 0, errors.New(`"timeout" needs "wait": true`)
	}
	return d, nil
}

// DecodeAttach parses and validates an attach body.
func DecodeAttach(r io.Reader) (AttachRequest, time.Duration, error) {
	var req AttachRequest
	if err := decodeJSON(r, &req); err != nil {
		return req, 0, err
	}
	norm, err := validTarget(req.Target)
	if err != nil {
		return req, 0, err
	}
	req.Target = norm
	if err := validWeight(req.Weight); err != nil {
		return req, 0, err
	}
	d, err := waitTimeout(req.Wait, req.Timeout)
	return req, d, err
}

// DecodeDetach parses and validates a detach body.
func DecodeDetach(r io.Reader) (DetachRequest, time.Duration, error) {
	var req DetachRequest
	if err := decodeJSON(r, &req); err != nil {
		return req, 0, err
	}
	norm, err := validTarget(req.Target)
	if err != nil {
		return req, 0, err
	}
	req.Target = norm
	d, err := waitTimeout(req.Wait, req.Timeout)
	return req, d, err
}

// DecodeWeight parses and validates a weight body.
func DecodeWeight(r io.Reader) (WeightRequest, error) {
	var req WeightRequest
	if err := decodeJSON(r, &req); err != nil {
		return req, err
	}
	norm, err := validTarget(req.Target)
	if err != nil {
		return req, err
	}
	req.Target = norm
	if req.Weight == nil {
		return req, errors.New(`"weight" is required`)
	}
	return req, validWeight(req.Weight)
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pools", s.handleListPools)
	mux.HandleFunc("GET /v1/pools/{pool}", s.handleGetPool)
	mux.HandleFunc("POST /v1/pools/{pool}/attach", s.handleAttach)
	mux.HandleFunc("POST /v1/pools/{pool}/detach", s.handleDetach)
	mux.HandleFunc("POST /v1/pools/{pool}/weight", s.handleWeight)
	mux.HandleFunc("POST /v1/upgrade", s.handleUpgrade)
	mux.HandleFunc("GET /v1/switches", s.handleSwitches)
	mux.HandleFunc("POST /v1/switch", s.handleSwitch)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, fmt.Sprintf("no such admin call: %s %s", r.Method, r.URL.Path))
	})
	return s.requireToken(mux)
}

func (s *Server) requireToken(next http.Handler) http.Handler {
	want := []byte(s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The scheme name is case-insensitive (RFC 9110 section 11.1).
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(token), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="zerodown lb"`)
			writeJSONError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) viewPool(p *pool) poolView {
	v := poolView{Name: p.name, Balance: p.settings().balance, FailOpen: p.settings().failOpen,
		FailingOpen: p.routes.Load().failOpen, DeregistrationDelayMillis: p.settings().deregistrationDelay.Milliseconds(),
		Targets: []snapshot{}}
	for _, t := range p.list() {
		v.Targets = append(v.Targets, t.snapshot())
	}
	return v
}

func (s *Server) handleListPools(w http.ResponseWriter, _ *http.Request) {
	out := struct {
		Pools []poolView `json:"pools"`
	}{Pools: []poolView{}}
	for _, p := range s.poolList() {
		out.Pools = append(out.Pools, s.viewPool(p))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetPool(w http.ResponseWriter, r *http.Request) {
	p := s.pool(r.PathValue("pool"))
	if p == nil {
		writeJSONError(w, http.StatusNotFound, errUnknownPool(r.PathValue("pool")).Error())
		return
	}
	writeJSON(w, http.StatusOK, s.viewPool(p))
}

func (s *Server) handleAttach(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("pool")
	if s.pool(name) == nil {
		writeJSONError(w, http.StatusNotFound, errUnknownPool(name).Error())
		return
	}
	req, timeout, err := DecodeAttach(r.Body)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	weight := -1
	if req.Weight != nil {
		weight = *req.Weight
	}
	t, err := s.Attach(name, req.Target, weight)
	if s.answerChange(w, t, err) {
		return
	}
	if !req.Wait {
		writeJSON(w, http.StatusOK, t.snapshot())
		return
	}
	s.answerWait(w, r, t, stateHealthy, timeout)
}

func (s *Server) handleDetach(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("pool")
	if s.pool(name) == nil {
		writeJSONError(w, http.StatusNotFound, errUnknownPool(name).Error())
		return
	}
	req, timeout, err := DecodeDetach(r.Body)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, err := s.Detach(name, req.Target)
	if s.answerChange(w, t, err) {
		return
	}
	if !req.Wait {
		writeJSON(w, http.StatusOK, t.snapshot())
		return
	}
	s.answerWait(w, r, t, stateUnused, timeout)
}

func (s *Server) handleWeight(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("pool")
	if s.pool(name) == nil {
		writeJSONError(w, http.StatusNotFound, errUnknownPool(name).Error())
		return
	}
	req, err := DecodeWeight(r.Body)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, err := s.SetWeight(name, req.Target, *req.Weight)
	if s.answerChange(w, t, err) {
		return
	}
	writeJSON(w, http.StatusOK, t.snapshot())
}

func (s *Server) handleSwitches(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, SwitchesView{Switches: s.Switches()})
}

func (s *Server) handleSwitch(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeSwitch(r.Body)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	start := time.Now()
	switches, err := s.Switch(req.From, req.To, req.Force)
	if err != nil && switches != nil {
		writeJSONError(w, http.StatusInternalServerError, "the switch is applied but was not saved, so a restart would lose it: "+err.Error())
		return
	}
	var se *switchError
	if errors.As(err, &se) {
		writeJSONError(w, http.StatusConflict, err.Error())
		return
	}
	if s.answerChange(w, nil, err) {
		return
	}
	writeJSON(w, http.StatusOK, SwitchesView{Switches: switches, SwitchMillis: float64(time.Since(start).Microseconds()) / 1000})
}

// handleUpgrade hands the sockets to a new process started from the
// executable's path, so replacing the file first upgrades the binary.
func (s *Server) handleUpgrade(w http.ResponseWriter, r *http.Request) {
	took, err := s.Upgrade(r.Context())
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, UpgradeResult{HandoverMillis: float64(took.Microseconds()) / 1000})
	case errors.Is(err, errNoUpgrade):
		writeJSONError(w, http.StatusNotImplemented, err.Error())
	case errors.Is(err, errUpgradeRunning), errors.Is(err, errShuttingDown), errors.Is(err, errPreviousDraining):
		writeJSONError(w, http.StatusConflict, err.Error())
	default:
		writeJSONError(w, http.StatusInternalServerError, "upgrade failed, the running process carries on: "+err.Error())
	}
}

// answerChange writes the error of a change, if any, and reports whether it
// did. A change that was applied but not saved is a 500 that says so.
func (s *Server) answerChange(w http.ResponseWriter, t *target, err error) bool {
	var up *unknownPoolError
	switch {
	case err == nil:
		return false
	case errors.As(err, &up), errors.Is(err, errUnknownTarget):
		writeJSONError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errShuttingDown), errors.Is(err, errHandingOver):
		// Clients try a 503 again; after a handover they reach the new
		// process through the same socket.
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusServiceUnavailable, err.Error())
	case t != nil:
		writeJSONError(w, http.StatusInternalServerError, "the change is applied but was not saved, so a restart would lose it: "+err.Error())
	default:
		writeJSONError(w, http.StatusInternalServerError, err.Error())
	}
	return true
}

func (s *Server) answerWait(w http.ResponseWriter, r *http.Request, t *target, want targetState, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if err := t.pool.waitState(ctx, t, want); err != nil {
		writeJSON(w, http.StatusGatewayTimeout, struct {
			Error  string   `json:"error"`
			Target snapshot `json:"target"`
		}{fmt.Sprintf("waited %s: %v", timeout, err), t.snapshot()})
		return
	}
	writeJSON(w, http.StatusOK, t.snapshot())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}
