package agent

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

const (
	// maxJSONBody bounds the body of an API call other than an upload.
	maxJSONBody = 64 << 10
	// maxSpecHeader bounds the app spec header (base64 of JSON).
	maxSpecHeader = 64 << 10
	// uploadIdle is how long an upload may send nothing before it is cut.
	uploadIdle = time.Minute
	// maxActivateTimeout bounds the timeout an activation may ask for.
	maxActivateTimeout = 2 * time.Hour
	// callTimeout bounds how long an activate or rollback call may take to
	// send its body.
	callTimeout = 30 * time.Second
	// defaultLogLines is what GET /v1/logs returns without ?lines.
	defaultLogLines = 100
)

// Error codes in the "code" field of an error answer, for clients.
const (
	codeBadInput     = "bad_input"
	codeUnauthorized = "unauthorized"
	codeNotFound     = "not_found"
	codeConflict     = "conflict"
	codeBusy         = "busy"
	codeChecksum     = "checksum"
	codeUnsafe       = "unsafe_archive"
	codeTooLarge     = "too_large"
	codeIncomplete   = "incomplete_upload"
	codeFailed       = "activation_failed"
	codeBroken       = "activation_broken"
	codeDamaged      = "damaged"
	codeInternal     = "internal"
)

// Handler is the API; every route needs the bearer token.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/releases/{version}", a.handleUpload)
	mux.HandleFunc("POST /v1/releases/{version}", a.handleUpload)
	mux.HandleFunc("GET /v1/releases", a.handleReleases)
	mux.HandleFunc("GET /v1/releases/{version}", a.handleRelease)
	mux.HandleFunc("POST /v1/activate", a.handleActivate)
	mux.HandleFunc("POST /v1/rollback", a.handleRollback)
	mux.HandleFunc("POST /v1/retire", a.handleRetire)
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	mux.HandleFunc("GET /v1/logs", a.handleLogs)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no such agent call: %s %s", r.Method, r.URL.Path), nil)
	})
	return a.requireToken(mux)
}

// readBody decodes a call's JSON body, which must arrive within
// callTimeout. The deadline is lifted afterwards: an activation may take
// longer, and the connection must stay readable meanwhile.
func readBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(callTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	return decodeBody(r.Body, v, emptyOK)
}

func (a *Agent) requireToken(next http.Handler) http.Handler {
	want := []byte("Bearer " + a.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="zerodown agent"`)
			writeError(w, http.StatusUnauthorized, codeUnauthorized, "missing or wrong bearer token", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, extra func(*errorBody)) {
	body := errorBody{Error: msg, Code: code}
	if extra != nil {
		extra(&body)
	}
	writeJSON(w, status, body)
}

// answerError maps an error of the store or an activation to its answer.
func (a *Agent) answerError(w http.ResponseWriter, err error) {
	status, body := errorAnswer(err)
	if status == http.StatusInternalServerError && (body.Code == codeInternal || body.Code == codeDamaged) {
		a.log.Error("agent call failed", "err", err)
	}
	writeJSON(w, status, body)
}

// errorAnswer is the status and body an error is answered with; an
// activation's outcome records the same, so a repeated request gets the
// same answer.
func errorAnswer(err error) (int, errorBody) {
	var (
		busy *busyError
		ae   *activationError
		rep  *replayedError
	)
	body := errorBody{Error: err.Error()}
	switch {
	case errors.As(err, &rep):
		o := rep.o
		return o.Status, errorBody{Error: o.Error, Code: o.Code, Failure: o.Failure}
	case errors.As(err, &busy):
		body.Code, body.Activation = codeBusy, busy.info
		return http.StatusConflict, body
	case errors.As(err, &ae):
		body.Code = codeFailed
		if ae.status != http.StatusUnprocessableEntity {
			body.Code = codeBroken
		}
		f := ae.failure
		body.Failure = &f
		return ae.status, body
	case errors.Is(err, errDamaged):
		// A file on the host needs the operator; asking again will not do.
		body.Code = codeDamaged
		return http.StatusInternalServerError, body
	case errors.Is(err, errChecksum):
		body.Code = codeChecksum
		return http.StatusBadRequest, body
	case errors.Is(err, errUnsafe):
		body.Code = codeUnsafe
		return http.StatusBadRequest, body
	case errors.Is(err, errTooLarge):
		body.Code = codeTooLarge
		return http.StatusRequestEntityTooLarge, body
	case errors.Is(err, errIncomplete):
		body.Code = codeIncomplete
		return http.StatusRequestTimeout, body
	case errors.Is(err, errBadInput):
		body.Code = codeBadInput
		return http.StatusBadRequest, body
	case errors.Is(err, errNotFound):
		body.Code = codeNotFound
		return http.StatusNotFound, body
	case errors.Is(err, errConflict):
		body.Code = codeConflict
		return http.StatusConflict, body
	}
	body.Code = codeInternal
	return http.StatusInternalServerError, body
}

// decodeBody reads one JSON object with only known fields; empty allowed
// when the call has no required field.
func decodeBody(r io.Reader, v any, emptyOK bool) error {
	data, err := io.ReadAll(io.LimitReader(r, maxJSONBody+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", errBadInput, err)
	}
	if len(data) > maxJSONBody {
		return fmt.Errorf("%w: body is larger than %d bytes", errBadInput, maxJSONBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if emptyOK {
			return nil
		}
		return fmt.Errorf("%w: body is empty; want a JSON object", errBadInput)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body is not valid JSON for this call: %v", errBadInput, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: body has data after the JSON object", errBadInput)
	}
	return nil
}

// decodeSpec reads the app spec header of an upload.
func decodeSpec(h string) (config.App, error) {
	var spec config.App
	if h == "" {
		return spec, fmt.Errorf("%w: the app spec is missing: send it as base64 of its JSON in the %s header", errBadInput, SpecHeader)
	}
	if len(h) > maxSpecHeader {
		return spec, fmt.Errorf("%w: the %s header is larger than %d bytes", errBadInput, SpecHeader, maxSpecHeader)
	}
	data, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return spec, fmt.Errorf("%w: the %s header is not base64: %v", errBadInput, SpecHeader, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return spec, fmt.Errorf("%w: the app spec in %s is not valid: %v", errBadInput, SpecHeader, err)
	}
	return spec, nil
}

func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: timeout %q is not a duration such as 2m", errBadInput, s)
	}
	if d <= 0 || d > maxActivateTimeout {
		return 0, fmt.Errorf("%w: timeout %s is out of range (0, %s]", errBadInput, d, maxActivateTimeout)
	}
	return d, nil
}

func (a *Agent) handleUpload(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	u := &upload{
		version: r.PathValue("version"),
		sha256:  q.Get("sha256"),
		format:  q.Get("format"),
		name:    q.Get("name"),
		size:    r.ContentLength,
	}
	if u.format == "" {
		u.format = host.FormatTarGz
	}
	result := "refused"
	defer func() { a.m.uploads.WithLabelValues(result).Inc() }()
	spec, err := decodeSpec(r.Header.Get(SpecHeader))
	if err != nil {
		a.answerError(w, err)
		return
	}
	u.spec = spec
	// Everything that can be answered without the body is, so a client
	// that sent "Expect: 100-continue" does not send it in vain.
	if info, unchanged, err := a.store.Check(u); err != nil || unchanged {
		if err != nil {
			a.answerError(w, err)
			return
		}
		result = "unchanged"
		writeJSON(w, http.StatusOK, UploadResult{Release: info, Unchanged: true})
		return
	}
	u.body = &idleReader{r: r.Body, rc: http.NewResponseController(w), idle: uploadIdle}
	began := time.Now()
	info, unchanged, err := a.store.Put(r.Context(), u)
	if err != nil {
		if !errors.Is(err, errBadInput) && !errors.Is(err, errChecksum) && !errors.Is(err, errUnsafe) &&
			!errors.Is(err, errTooLarge) && !errors.Is(err, errConflict) && !errors.Is(err, errIncomplete) {
			result = "failed"
		}
		a.log.Warn("upload refused", "version", u.version, "err", err)
		a.answerError(w, err)
		return
	}
	if unchanged {
		result = "unchanged"
		writeJSON(w, http.StatusOK, UploadResult{Release: info, Unchanged: true})
		return
	}
	result = "stored"
	a.m.uploadBytes.Add(float64(info.Size))
	a.log.Info("stored release", "version", info.Version, "bytes", info.Size, "unpacked", info.Unpacked, "took", time.Since(began))
	pruned := a.prune(info.Version)
	if cur, err := a.store.Current(); err == nil {
		info.Current = info.Version == cur
	}
	writeJSON(w, http.StatusCreated, UploadResult{Release: info, Pruned: pruned})
}

// idleReader cuts an upload that stalls: every read that brings data
// moves the connection's read deadline on by idle (at most once a second).
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	set  time.Time
}

func (ir *idleReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(ir.set) > time.Second {
		ir.set = now
		_ = ir.rc.SetReadDeadline(now.Add(ir.idle))
	}
	n, err := ir.r.Read(p)
	if err == io.EOF {
		// All there: unpacking may take longer than idle, and the
		// connection must stay readable meanwhile.
		_ = ir.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (a *Agent) handleReleases(w http.ResponseWriter, _ *http.Request) {
	list, err := a.Releases()
	if err != nil {
		a.answerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Releases []ReleaseInfo `json:"releases"`
	}{list})
}

func (a *Agent) handleRelease(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("version")
	list, err := a.Releases()
	if err != nil {
		a.answerError(w, err)
		return
	}
	for _, rel := range list {
		if rel.Version == v {
			writeJSON(w, http.StatusOK, rel)
			return
		}
	}
	if err := checkVersion(v); err != nil {
		a.answerError(w, err)
		return
	}
	a.answerError(w, fmt.Errorf("%w: version %s is not on this host", errNotFound, v))
}

func (a *Agent) handleActivate(w http.ResponseWriter, r *http.Request) {
	var req ActivateRequest
	if err := readBody(w, r, &req, false); err != nil {
		a.answerError(w, err)
		return
	}
	if req.Version == "" {
		a.answerError(w, fmt.Errorf(`%w: "version" is required`, errBadInput))
		return
	}
	if err := checkVersion(req.Version); err != nil {
		a.answerError(w, err)
		return
	}
	timeout, err := parseTimeout(req.Timeout)
	if err != nil {
		a.answerError(w, err)
		return
	}
	if r.Context().Err() != nil {
		// The caller went away (an aborted run) before anything started:
		// start nothing it would not know of.
		return
	}
	res, err := a.switchTo("activate", req.Version, req.ID, timeout, req.Swap)
	if err != nil {
		a.answerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *Agent) handleRollback(w http.ResponseWriter, r *http.Request) {
	var req RollbackRequest
	if err := readBody(w, r, &req, true); err != nil {
		a.answerError(w, err)
		return
	}
	timeout, err := parseTimeout(req.Timeout)
	if err != nil {
		a.answerError(w, err)
		return
	}
	if r.Context().Err() != nil {
		return
	}
	res, err := a.switchTo("rollback", "", req.ID, timeout, req.Swap)
	if err != nil {
		a.answerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	s, err := a.Status()
	if err != nil {
		a.answerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := defaultLogLines
	if s := q.Get("lines"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > MaxLogLines {
			a.answerError(w, fmt.Errorf("%w: lines %q: want 1 to %d", errBadInput, s, MaxLogLines))
			return
		}
	}
	v := q.Get("version")
	if v == "" {
		cur, err := a.store.Current()
		if err != nil {
			a.answerError(w, err)
			return
		}
		if cur == "" {
			a.answerError(w, fmt.Errorf("%w: no release is current; name one with ?version=", errNotFound))
			return
		}
		v = cur
	} else if _, err := a.store.Get(v); err != nil && !errors.Is(err, errDamaged) {
		// A release whose metadata is damaged still has its log.
		a.answerError(w, err)
		return
	}
	lines, err := tailLog(a.store.LogPath(v), n)
	if err != nil {
		a.answerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, LogsResult{Version: v, Lines: lines})
}
