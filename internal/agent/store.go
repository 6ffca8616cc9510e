package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/atomicfile"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

// Errors of the store, mapped to HTTP statuses by the server.
var (
	errNotFound = host.ErrNotFound
	errConflict = host.ErrConflict
	errChecksum = host.ErrChecksum
	errBadInput = errors.New("bad input")
	// errDamaged is a file of the store that cannot be read as what it
	// should be: a release's metadata, state.json.
	errDamaged = errors.New("damaged")
	// errIncomplete is an upload that did not arrive whole: the sender
	// stalled or its connection was cut. Nothing is wrong with what was
	// sent; sending it again may well work.
	errIncomplete = errors.New("upload incomplete")
)

// Store keeps releases on disk under root:
//
//	agent.lock                held locked by the agent using the root, with its pid
//	releases/<version>/       the unpacked artifact
//	releases/<version>.json   its metadata and app spec, written last (0600: the env)
//	releases/<version>.tmp/   an upload being unpacked
//	current -> releases/<v>   switched by renaming a new link over it
//	logs/<version>.log        the app's output
//	tmp/                      uploads being received
//	run/                      pid files
//	state.json                previous release, activation in progress
//
// A release exists when its .json does; a directory without one is left
// over from a crash and removed on open.
type Store struct {
	root, releases, tmp, logs, run string
	limits                         extractLimits
	maxArtifact                    int64
	log                            *slog.Logger
	// lock is agent.lock, held while the store is open.
	lock *os.File

	mu sync.Mutex
	// busy are versions being uploaded, deleted or activated right now.
	busy map[string]*busyMark
	// create opens files while unpacking; tests inject disk errors here.
	create func(*os.Root, string, os.FileMode) (io.WriteCloser, error)
	// hooks let tests hold uploads at their steps; nil outside tests, read
	// under mu.
	hooks uploadHooks

	// stateMu orders the writes of state.json: a repair re-reads under it
	// and writes only what is still damaged.
	stateMu sync.Mutex
}

// busyMark is a version in use; done is closed when it is no longer.
type busyMark struct {
	what string  // "uploaded", "deleted" or "activated"
	up   *upload // the upload, for "uploaded"
	done chan struct{}
}

// uploadHooks are called by Put: uploading once an upload holds its
// version's mark, before it reads its body; waiting when an upload waits
// for an identical one of its version.
type uploadHooks struct {
	uploading, waiting func(version string)
}

// specMode is the mode of releases/<version>.json: its app spec holds the
// env, which may hold secrets. The release directories stay 0755, so an
// app run as another user can read its code; the agent passes it the env.
const specMode = 0o600

// releaseMeta is releases/<version>.json.
type releaseMeta struct {
	Version    string     `json:"version"`
	SHA256     string     `json:"sha256"`
	Format     string     `json:"format"`
	Name       string     `json:"name,omitempty"`
	Size       int64      `json:"size"`
	Unpacked   int64      `json:"unpacked"`
	UploadedAt time.Time  `json:"uploaded_at"`
	Spec       config.App `json:"spec"`
}

func (m releaseMeta) info() ReleaseInfo {
	return ReleaseInfo{
		Version: m.Version, SHA256: m.SHA256, Format: m.Format, Name: m.Name,
		Size: m.Size, Unpacked: m.Unpacked, UploadedAt: m.UploadedAt, Spec: m.Spec,
	}
}

// agentState is state.json.
type agentState struct {
	Previous string `json:"previous,omitempty"`
	// Activation is set while an activation runs; an agent that finds it
	// on start was stopped in the middle of one and finishes it.
	Activation *ActivationInfo `json:"activation,omitempty"`
	// Port is the slot the current release runs in (0: port); Retiring
	// the release a swap left in the other slot (see swap.go).
	Port     int           `json:"port,omitempty"`
	Retiring *RetiringInfo `json:"retiring,omitempty"`
}

// openStore takes the root's lock, creates the layout under it, removes
// what a crash left and repairs a damaged state.json. Close gives the lock
// up.
func openStore(root string, maxArtifact, maxUnpacked int64, log *slog.Logger) (_ *Store, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("release root %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("create release store: %w", err)
	}
	// Locked before anything else: the cleanup below would remove another
	// agent's uploads in progress.
	lock, err := lockRoot(abs, filepath.Join(abs, lockName))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlockRoot(lock)
		}
	}()
	s := &Store{
		root:        abs,
		releases:    filepath.Join(abs, "releases"),
		tmp:         filepath.Join(abs, "tmp"),
		logs:        filepath.Join(abs, "logs"),
		run:         filepath.Join(abs, "run"),
		limits:      extractLimits{maxBytes: maxUnpacked},
		maxArtifact: maxArtifact,
		log:         log,
		lock:        lock,
		busy:        map[string]*busyMark{},
	}
	for _, d := range []string{s.releases, s.tmp, s.logs, s.run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create release store: %w", err)
		}
	}
	if err := s.cleanup(); err != nil {
		return nil, err
	}
	// Read once now, so a damaged file is rebuilt, and said so, at start.
	// One that cannot be read at all is recover's to report.
	_, _ = s.State()
	list, _ := s.List()
	for _, r := range list {
		if r.Error != "" {
			log.Warn("a stored release cannot be used", "version", r.Version, "err", r.Error)
		}
	}
	return s, nil
}

// close gives the root's lock up; it may be called more than once.
func (s *Store) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock != nil {
		unlockRoot(s.lock)
		s.lock = nil
	}
}

// cleanup removes uploads and unpacking a crash interrupted.
func (s *Store) cleanup() error {
	tmps, err := os.ReadDir(s.tmp)
	if err != nil {
		return fmt.Errorf("clean up %s: %w", s.tmp, err)
	}
	for _, e := range tmps {
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return fmt.Errorf("clean up: %w", err)
		}
	}
	entries, err := os.ReadDir(s.releases)
	if err != nil {
		return fmt.Errorf("clean up %s: %w", s.releases, err)
	}
	current, _ := s.Current()
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(s.releases, name)
		switch {
		case strings.HasSuffix(name, ".tmp"), strings.HasPrefix(name, "."):
			// An unpacking, or a file atomicfile.Write did not finish;
			// versions never start with a dot or end in .tmp.
			err = os.RemoveAll(p)
		case e.IsDir() && name != current:
			if _, statErr := os.Stat(p + ".json"); errors.Is(statErr, fs.ErrNotExist) {
				err = os.RemoveAll(p)
			}
		case strings.HasSuffix(name, ".json") && e.Type().IsRegular():
			// Written 0644 by agents before this one.
			if fi, statErr := e.Info(); statErr == nil && fi.Mode().Perm()&^specMode != 0 {
				err = os.Chmod(p, specMode)
			}
		}
		if err != nil {
			return fmt.Errorf("clean up: %w", err)
		}
	}
	return nil
}

// checkVersion is host.CheckVersion as the agent's bad input.
func checkVersion(v string) error {
	if err := host.CheckVersion(v); err != nil {
		return fmt.Errorf("%w: %v", errBadInput, err)
	}
	return nil
}

// upload is one artifact to store.
type upload struct {
	version, sha256, format, name string
	spec                          config.App
	body                          io.Reader
	// size is the declared length, or -1.
	size int64
}

func (u *upload) check() error {
	if err := checkVersion(u.version); err != nil {
		return err
	}
	if len(u.sha256) != 64 || strings.Trim(strings.ToLower(u.sha256), "0123456789abcdef") != "" {
		return fmt.Errorf("%w: sha256 %q: want the artifact's 64 hex digit SHA-256", errBadInput, u.sha256)
	}
	u.sha256 = strings.ToLower(u.sha256)
	switch u.format {
	case host.FormatTarGz, host.FormatZip:
		if u.name != "" {
			return fmt.Errorf("%w: name is only for format %s", errBadInput, host.FormatFile)
		}
	case host.FormatFile:
		if err := checkFileName(u.name); err != nil {
			return fmt.Errorf("%w: %v", errBadInput, err)
		}
	default:
		return fmt.Errorf("%w: format %q: want %s, %s or %s", errBadInput, u.format, host.FormatTarGz, host.FormatZip, host.FormatFile)
	}
	u.spec.ApplyDefaults()
	if err := u.spec.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errBadInput, err)
	}
	return nil
}

// existing checks an upload against a stored release of its version:
// unchanged true when it is the same, errConflict when it differs.
func (s *Store) existing(u *upload) (ReleaseInfo, bool, error) {
	m, err := s.meta(u.version)
	if errors.Is(err, errNotFound) {
		return ReleaseInfo{}, false, nil
	}
	if err != nil {
		return ReleaseInfo{}, false, err
	}
	switch {
	case m.SHA256 != u.sha256:
		return ReleaseInfo{}, false, fmt.Errorf("%w: version %s is stored with sha256 %s, not %s; a version never changes, upload a new one", errConflict, u.version, m.SHA256, u.sha256)
	case m.Format != u.format || m.Name != u.name || !specEqual(m.Spec, u.spec):
		return ReleaseInfo{}, false, fmt.Errorf("%w: version %s is stored with the same artifact but another format, name or app spec; upload a new version", errConflict, u.version)
	}
	return m.info(), true, nil
}

// same reports whether two checked uploads store the same release.
func (u *upload) same(o *upload) bool {
	return u.sha256 == o.sha256 && u.format == o.format && u.name == o.name && specEqual(u.spec, o.spec)
}

// specEqual compares two app specs by meaning rather than by their Go
// values: with the defaults applied to both, and a missing, null or empty
// map or list alike. A spec stored without "env" and one sent with
// "env": {} are the same spec.
func specEqual(a, b config.App) bool {
	ma, errA := specMeaning(a)
	mb, errB := specMeaning(b)
	return errA == nil && errB == nil && reflect.DeepEqual(ma, mb)
}

// specMeaning is a spec as generic JSON without its empty values. Going
// through JSON covers every field, also ones added to config.App later.
func specMeaning(spec config.App) (any, error) {
	spec.ApplyDefaults() // on a copy: it sets fields, it does not touch maps
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return dropEmpty(v), nil
}

// dropEmpty turns empty objects and arrays into nil and leaves them out
// of objects; an array keeps its length, since positions count there.
func dropEmpty(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e = dropEmpty(e); e == nil {
				delete(x, k)
			} else {
				x[k] = e
			}
		}
		if len(x) == 0 {
			return nil
		}
	case []any:
		for i, e := range x {
			x[i] = dropEmpty(e)
		}
		if len(x) == 0 {
			return nil
		}
	}
	return v
}

// Check answers an upload before its body is read: unchanged when the
// release is stored already, an error when it can never succeed.
func (s *Store) Check(u *upload) (ReleaseInfo, bool, error) {
	if err := u.check(); err != nil {
		return ReleaseInfo{}, false, err
	}
	if u.size > s.maxArtifact {
		return ReleaseInfo{}, false, fmt.Errorf("%w: artifact of %d bytes is over max_artifact_bytes %d", errTooLarge, u.size, s.maxArtifact)
	}
	return s.existing(u)
}

// Put stores an upload: the body goes to a temporary file while it is
// hashed, is unpacked into releases/<version>.tmp and renamed into place;
// the metadata is written last. On any error nothing of it is kept.
func (s *Store) Put(ctx context.Context, u *upload) (ReleaseInfo, bool, error) {
	info, unchanged, err := s.Check(u)
	if err != nil || unchanged {
		return info, unchanged, err
	}
	mark, info, unchanged, err := s.markUpload(ctx, u)
	if err != nil || unchanged {
		return info, unchanged, err
	}
	defer s.unmark(u.version, mark)

	f, err := os.CreateTemp(s.tmp, u.version+".*.artifact")
	if err != nil {
		return ReleaseInfo{}, false, fmt.Errorf("store upload of %s: %w", u.version, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	h := sha256.New()
	body := &readErr{r: u.body}
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, s.maxArtifact+1))
	if body.err != nil && body.err != io.EOF {
		// The sender's side: a connection cut, a body shorter than its
		// Content-Length, an upload that stalled.
		return ReleaseInfo{}, false, fmt.Errorf("%w: the upload of %s ended after %d bytes: %v; nothing was kept", errIncomplete, u.version, n, body.err)
	}
	if err != nil {
		return ReleaseInfo{}, false, fmt.Errorf("store upload of %s after %d bytes: %w; nothing was kept", u.version, n, err)
	}
	if n > s.maxArtifact {
		return ReleaseInfo{}, false, fmt.Errorf("%w: artifact of %s is over max_artifact_bytes %d", errTooLarge, u.version, s.maxArtifact)
	}
	if u.size >= 0 && n != u.size {
		return ReleaseInfo{}, false, fmt.Errorf("%w: artifact of %s is %d bytes, the request said %d", errBadInput, u.version, n, u.size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != u.sha256 {
		return ReleaseInfo{}, false, fmt.Errorf("%w: artifact of %s (%d bytes) has sha256 %s, the upload said %s; nothing was kept", errChecksum, u.version, n, got, u.sha256)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ReleaseInfo{}, false, fmt.Errorf("store upload of %s: %w", u.version, err)
	}

	final := filepath.Join(s.releases, u.version)
	tmpDir := final + ".tmp"
	if err := os.RemoveAll(tmpDir); err != nil {
		return ReleaseInfo{}, false, fmt.Errorf("unpack %s: %w", u.version, err)
	}
	unpacked, err := extract(ctx, u.format, f, n, tmpDir, u.name, s.limits, s.create)
	if err != nil {
		os.RemoveAll(tmpDir)
		return ReleaseInfo{}, false, fmt.Errorf("unpack %s (%s): %w; nothing was kept", u.version, u.format, err)
	}
	if err := syncDir(tmpDir); err != nil {
		os.RemoveAll(tmpDir)
		return ReleaseInfo{}, false, fmt.Errorf("unpack %s: %w", u.version, err)
	}
	if err := os.RemoveAll(final); err != nil { // a directory without metadata
		os.RemoveAll(tmpDir)
		return ReleaseInfo{}, false, fmt.Errorf("unpack %s: %w", u.version, err)
	}
	if err := os.Rename(tmpDir, final); err != nil {
		os.RemoveAll(tmpDir)
		return ReleaseInfo{}, false, fmt.Errorf("move release %s into place: %w", u.version, err)
	}
	m := releaseMeta{
		Version: u.version, SHA256: u.sha256, Format: u.format, Name: u.name,
		Size: n, Unpacked: unpacked, UploadedAt: time.Now().UTC(), Spec: u.spec,
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		err = atomicfile.Write(final+".json", data, specMode)
	}
	if err == nil {
		err = syncDir(s.releases)
	}
	if err != nil {
		os.Remove(final + ".json")
		os.RemoveAll(final)
		return ReleaseInfo{}, false, fmt.Errorf("record release %s: %w; nothing was kept", u.version, err)
	}
	return m.info(), false, nil
}

// markUpload marks u's version as being uploaded, once no other upload,
// deletion or activation of it is under way. An identical upload in
// progress is waited for: when it stored the release, u is unchanged, as
// if it came after; when it failed, u goes on in its place. Another
// artifact or spec for the version is a conflict at once, as is a version
// being activated.
func (s *Store) markUpload(ctx context.Context, u *upload) (*busyMark, ReleaseInfo, bool, error) {
	for {
		s.mu.Lock()
		other, busy := s.busy[u.version]
		if !busy {
			m := &busyMark{what: "uploaded", up: u, done: make(chan struct{})}
			s.busy[u.version] = m
			hook := s.hooks.uploading
			s.mu.Unlock()
			// Checked again under the mark: an upload of the same version
			// may have finished since Check.
			if info, unchanged, err := s.existing(u); err != nil || unchanged {
				s.unmark(u.version, m)
				return nil, info, unchanged, err
			}
			if hook != nil {
				hook(u.version)
			}
			return m, ReleaseInfo{}, false, nil
		}
		hook := s.hooks.waiting
		s.mu.Unlock()
		switch {
		case other.what == "uploaded" && !other.up.same(u):
			return nil, ReleaseInfo{}, false, fmt.Errorf("%w: version %s is being uploaded right now with another artifact, format, name or app spec; a version never changes, upload a new one", errConflict, u.version)
		case other.what == "activated":
			// Held for as long as an activation takes: not worth a wait.
			return nil, ReleaseInfo{}, false, fmt.Errorf("%w: version %s is being activated right now", errConflict, u.version)
		}
		if hook != nil {
			hook(u.version)
		}
		select {
		case <-other.done:
		case <-ctx.Done():
			return nil, ReleaseInfo{}, false, fmt.Errorf("%w: the upload of %s ended while it waited for another upload of the same release: %v; nothing was kept", errIncomplete, u.version, ctx.Err())
		}
		if info, unchanged, err := s.existing(u); err != nil || unchanged {
			return nil, info, unchanged, err
		}
	}
}

// mark marks version busy with what, or returns the mark in the way.
func (s *Store) mark(version, what string) (*busyMark, *busyMark) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, busy := s.busy[version]; busy {
		return nil, other
	}
	m := &busyMark{what: what, done: make(chan struct{})}
	s.busy[version] = m
	return m, nil
}

// unmark removes a mark and wakes whoever waits for it.
func (s *Store) unmark(version string, m *busyMark) {
	s.mu.Lock()
	if s.busy[version] == m {
		delete(s.busy, version)
	}
	s.mu.Unlock()
	close(m.done)
}

// metaPath is releases/<version>.json.
func (s *Store) metaPath(version string) string { return filepath.Join(s.releases, version+".json") }

// damagedRelease is the error of a release whose metadata cannot be used.
func damagedRelease(version, path, what string) error {
	return fmt.Errorf("%w: release %s cannot be used: %s %s; restore that file, or deploy another version", errDamaged, version, path, what)
}

func (s *Store) meta(version string) (releaseMeta, error) {
	if err := checkVersion(version); err != nil {
		return releaseMeta{}, err
	}
	path := s.metaPath(version)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return releaseMeta{}, fmt.Errorf("%w: version %s is not on this host", errNotFound, version)
	}
	if err != nil {
		return releaseMeta{}, fmt.Errorf("read release %s: %w", version, err)
	}
	var m releaseMeta
	switch err := json.Unmarshal(data, &m); {
	case len(bytes.TrimSpace(data)) == 0:
		return releaseMeta{}, damagedRelease(version, path, "is empty")
	case err != nil:
		return releaseMeta{}, damagedRelease(version, path, "is damaged: "+err.Error())
	case m.Version != version:
		// Another release's file copied over, or a JSON without one.
		return releaseMeta{}, damagedRelease(version, path, fmt.Sprintf("is damaged: it is the metadata of version %q", m.Version))
	}
	return m, nil
}

// Get returns one release.
func (s *Store) Get(version string) (ReleaseInfo, error) {
	m, err := s.meta(version)
	if err != nil {
		return ReleaseInfo{}, err
	}
	return m.info(), nil
}

// List returns the releases, oldest upload first.
func (s *Store) List() ([]ReleaseInfo, error) {
	entries, err := os.ReadDir(s.releases)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	out := []ReleaseInfo{}
	for _, e := range entries {
		v, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || checkVersion(v) != nil {
			continue
		}
		m, err := s.meta(v)
		switch {
		case errors.Is(err, errNotFound):
			continue // deleted meanwhile
		case err != nil:
			// Reported on its release: one bad file does not hide the
			// others, nor fail status.
			r := ReleaseInfo{Version: v, Error: err.Error()}
			// Its directory was written during the upload; the file may
			// have been damaged since.
			if fi, err := os.Stat(s.Dir(v)); err == nil {
				r.UploadedAt = fi.ModTime().UTC()
			} else if fi, err := e.Info(); err == nil {
				r.UploadedAt = fi.ModTime().UTC()
			}
			out = append(out, r)
			continue
		}
		out = append(out, m.info())
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].UploadedAt.Equal(out[j].UploadedAt) {
			return out[i].UploadedAt.Before(out[j].UploadedAt)
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// Dir is where a release is unpacked.
func (s *Store) Dir(version string) string { return filepath.Join(s.releases, version) }

// LogPath is the app's log file for a release.
func (s *Store) LogPath(version string) string { return filepath.Join(s.logs, version+".log") }

// Current is the version the current link points to; "" when there is none.
func (s *Store) Current() (string, error) {
	target, err := readCurrent(s.root)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read current release: %w", err)
	}
	v := filepath.Base(filepath.FromSlash(target))
	if checkVersion(v) != nil {
		return "", fmt.Errorf("read current release: it points to %q, which is not a release", target)
	}
	return v, nil
}

// SetCurrent switches the current link to version atomically: a new link
// is renamed over the old one, so a reader sees one or the other. "" removes
// it.
func (s *Store) SetCurrent(version string) error {
	if version == "" {
		if err := removeCurrent(s.root); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove current link: %w", err)
		}
		return syncDir(s.root)
	}
	if err := switchCurrent(s.root, "releases/"+version); err != nil {
		return fmt.Errorf("switch current to %s: %w", version, err)
	}
	return nil
}

// Prune deletes the oldest releases beyond keep, never one in protect.
func (s *Store) Prune(keep int, protect ...string) ([]string, error) {
	list, err := s.List()
	if err != nil {
		return nil, err
	}
	excess := len(list) - keep
	var deleted []string
	for _, r := range list {
		if excess <= 0 {
			break
		}
		if slices.Contains(protect, r.Version) {
			continue
		}
		m, _ := s.mark(r.Version, "deleted")
		if m == nil {
			continue // busy
		}
		err := s.delete(r.Version)
		s.unmark(r.Version, m)
		if err != nil {
			return deleted, err
		}
		deleted = append(deleted, r.Version)
		excess--
	}
	return deleted, nil
}

// hold marks versions as in use, so Prune leaves them alone, until the
// returned func is called. It fails for a version being uploaded or
// deleted.
func (s *Store) hold(versions ...string) (func(), error) {
	held := map[string]*busyMark{}
	release := func() {
		for v, m := range held {
			s.unmark(v, m)
		}
	}
	for _, v := range versions {
		if _, ok := held[v]; v == "" || ok {
			continue
		}
		m, other := s.mark(v, "activated")
		if m == nil {
			release()
			return nil, fmt.Errorf("%w: version %s is being %s right now", errConflict, v, other.what)
		}
		held[v] = m
	}
	return release, nil
}

// delete removes the metadata first, so the release is gone at once and a
// crash leaves only a directory that the next open removes.
func (s *Store) delete(version string) error {
	p := s.Dir(version)
	if err := os.Remove(p + ".json"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete release %s: %w", version, err)
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("delete release %s: %w", version, err)
	}
	for _, l := range []string{s.LogPath(version), s.LogPath(version) + ".1"} {
		if err := os.Remove(l); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete log of %s: %w", version, err)
		}
	}
	return nil
}

func (s *Store) statePath() string { return filepath.Join(s.root, "state.json") }

// State reads state.json; a missing file is the empty state, a damaged
// one is rebuilt (repairState).
func (s *Store) State() (agentState, error) {
	st, _, err := s.readState()
	if errors.Is(err, errDamaged) {
		return s.repairState()
	}
	return st, err
}

// readState reads state.json, returning its bytes when it is damaged.
func (s *Store) readState() (agentState, []byte, error) {
	var st agentState
	path := s.statePath()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil, nil
	}
	if err != nil {
		return st, nil, fmt.Errorf("read agent state: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return st, data, fmt.Errorf("%w: %s is empty", errDamaged, path)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return agentState{}, data, fmt.Errorf("%w: %s is not the agent's state: %v", errDamaged, path, err)
	}
	return st, nil, nil
}

// SaveState writes state.json atomically. It holds no secret (versions,
// ports, pids), so it stays readable like the pid files.
func (s *Store) SaveState(st agentState) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.writeState(st)
}

func (s *Store) writeState(st agentState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.statePath(), data, 0o644); err != nil {
		return fmt.Errorf("write agent state: %w", err)
	}
	return nil
}

// repairState rebuilds a damaged state.json from what survives of it
// (the fields before a truncation), the current link, the app's log and
// the pid files; writes it; and logs what it rebuilt and what is lost.
// The damaged bytes are kept in state.json.damaged.
func (s *Store) repairState() (agentState, error) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	_, data, damage := s.readState()
	if !errors.Is(damage, errDamaged) {
		// Repaired, or saved anew, while this waited.
		st, _, err := s.readState()
		return st, err
	}
	st, kept := salvageState(data)
	cur, curErr := s.Current()
	var rebuilt, lost []string
	if !slices.Contains(kept, "previous") {
		prev, from := s.previousFromLog(cur)
		switch {
		case prev != "":
			st.Previous = prev
			rebuilt = append(rebuilt, fmt.Sprintf("previous release %s, from %s", prev, from))
		case cur != "":
			lost = append(lost, "the previous release (a rollback has no target until the next activation)")
		}
	}
	if !slices.Contains(kept, "port") {
		if rec, ok, _ := readPidFile(filepath.Join(s.run, "app.pid")); ok && rec.Version == cur && cur != "" {
			st.Port = rec.Port
			rebuilt = append(rebuilt, fmt.Sprintf("port %d, from run/app.pid", rec.Port))
		}
	}
	if !slices.Contains(kept, "retiring") {
		if rec, ok, _ := readPidFile(filepath.Join(s.run, "retiring.pid")); ok && rec.Version != cur {
			st.Retiring = &RetiringInfo{Version: rec.Version, Port: rec.Port, PID: rec.PID}
			rebuilt = append(rebuilt, fmt.Sprintf("retiring release %s, from run/retiring.pid", rec.Version))
		}
	}
	if !slices.Contains(kept, "activation") {
		lost = append(lost, "the activation journal, if one was recorded (an activation the agent was stopped in is not finished: the current release is adopted or started as it is)")
	}
	if curErr != nil {
		lost = append(lost, "what the current link would have told: "+curErr.Error())
	}
	copyPath := s.statePath() + ".damaged"
	if err := os.WriteFile(copyPath, data, 0o600); err != nil {
		copyPath = "(not kept: " + err.Error() + ")"
	}
	if err := s.writeState(st); err != nil {
		// The rebuilt state still serves this call; the next one tries
		// the repair again.
		s.log.Error("could not write the rebuilt agent state", "err", err)
	}
	s.log.Warn("the agent state was damaged and has been rebuilt", "damage", damage.Error(), "kept", kept,
		"rebuilt", rebuilt, "lost", lost, "damaged_copy", copyPath)
	return st, nil
}

// salvageState decodes the fields of a damaged state.json that are whole,
// in order, up to the damage: a truncated file keeps what came before the
// cut. kept names them.
func salvageState(data []byte) (agentState, []string) {
	var st agentState
	good := map[string]json.RawMessage{}
	var kept []string
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return st, nil
	}
	for dec.More() {
		tok, err := dec.Token()
		key, isKey := tok.(string)
		if err != nil || !isKey {
			break
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		// Each field alone, so a value of the wrong type spoils only
		// itself.
		one, _ := json.Marshal(map[string]json.RawMessage{key: raw})
		var probe agentState
		if json.Unmarshal(one, &probe) == nil {
			good[key] = raw
			kept = append(kept, key)
		}
	}
	all, _ := json.Marshal(good)
	_ = json.Unmarshal(all, &st)
	if st.Previous != "" && checkVersion(st.Previous) != nil {
		st.Previous = ""
		kept = slices.DeleteFunc(kept, func(k string) bool { return k == "previous" })
	}
	sort.Strings(kept)
	return st, kept
}

// activationLine is the note an activation writes into the log of the
// release it activates (activate.go): "zerodown-agent <time>: activate of
// v2 begins (from "v1", timeout 40s)". Not anchored: the app's output may
// have left a line without its newline before it.
var activationLine = regexp.MustCompile(`zerodown-agent \S+: \w+ of (\S+) begins \(from ("(?:[^"\\]|\\.)*")`)

// previousFromLog finds the release that current was last activated from
// in current's log: that is the previous release, as the activation set
// it in state.json. It returns "" when the log does not say, or names a
// release that is no longer stored.
func (s *Store) previousFromLog(cur string) (prev, from string) {
	if cur == "" {
		return "", ""
	}
	for _, path := range []string{s.LogPath(cur), s.LogPath(cur) + ".1"} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			m := activationLine.FindStringSubmatch(sc.Text())
			if m == nil || m[1] != cur {
				continue
			}
			// Activating the current release again leaves previous as
			// it was.
			if v, err := strconv.Unquote(m[2]); err == nil && v != cur && checkVersion(v) == nil {
				prev = v
			}
		}
		f.Close()
		if prev != "" {
			if _, err := s.meta(prev); errors.Is(err, errNotFound) {
				return "", ""
			}
			return prev, "logs/" + filepath.Base(path)
		}
	}
	return "", ""
}

// readErr remembers the error of its reader, to tell a broken upload from
// a full disk.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil {
		r.err = err
	}
	return n, err
}
