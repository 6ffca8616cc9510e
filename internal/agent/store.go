package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
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
	// errIncomplete is an upload that did not arrive whole: the sender
	// stalled or its connection was cut. Nothing is wrong with what was
	// sent; sending it again may well work.
	errIncomplete = errors.New("upload incomplete")
)

// Store keeps releases on disk under root:
//
//	releases/<version>/       the unpacked artifact
//	releases/<version>.json   its metadata and app spec, written last
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

	mu sync.Mutex
	// busy are versions being uploaded or deleted right now.
	busy map[string]string
	// create opens files while unpacking; tests inject disk errors here.
	create func(*os.Root, string, os.FileMode) (io.WriteCloser, error)
}

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

// openStore creates the layout under root and removes what a crash left.
func openStore(root string, maxArtifact, maxUnpacked int64) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("release root %s: %w", root, err)
	}
	s := &Store{
		root:        abs,
		releases:    filepath.Join(abs, "releases"),
		tmp:         filepath.Join(abs, "tmp"),
		logs:        filepath.Join(abs, "logs"),
		run:         filepath.Join(abs, "run"),
		limits:      extractLimits{maxBytes: maxUnpacked},
		maxArtifact: maxArtifact,
		busy:        map[string]string{},
	}
	for _, d := range []string{s.root, s.releases, s.tmp, s.logs, s.run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create release store: %w", err)
		}
	}
	if err := s.cleanup(); err != nil {
		return nil, err
	}
	return s, nil
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
	case m.Format != u.format || m.Name != u.name || !reflect.DeepEqual(m.Spec, u.spec):
		return ReleaseInfo{}, false, fmt.Errorf("%w: version %s is stored with the same artifact but another format, name or app spec; upload a new version", errConflict, u.version)
	}
	return m.info(), true, nil
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
	s.mu.Lock()
	if what, ok := s.busy[u.version]; ok {
		s.mu.Unlock()
		return ReleaseInfo{}, false, fmt.Errorf("%w: version %s is being %s right now", errConflict, u.version, what)
	}
	s.busy[u.version] = "uploaded"
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.busy, u.version)
		s.mu.Unlock()
	}()
	// Checked again under the busy mark: an upload of the same version may
	// have finished between Check and here.
	if info, unchanged, err := s.existing(u); err != nil || unchanged {
		return info, unchanged, err
	}

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
		err = atomicfile.Write(final+".json", data, 0o644)
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

func (s *Store) meta(version string) (releaseMeta, error) {
	if err := checkVersion(version); err != nil {
		return releaseMeta{}, err
	}
	data, err := os.ReadFile(filepath.Join(s.releases, version+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return releaseMeta{}, fmt.Errorf("%w: version %s is not on this host", errNotFound, version)
	}
	if err != nil {
		return releaseMeta{}, fmt.Errorf("read release %s: %w", version, err)
	}
	var m releaseMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return releaseMeta{}, fmt.Errorf("read release %s: %s is damaged: %w", version, version+".json", err)
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
		if errors.Is(err, errNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
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
		s.mu.Lock()
		if _, busy := s.busy[r.Version]; busy {
			s.mu.Unlock()
			continue
		}
		s.busy[r.Version] = "deleted"
		s.mu.Unlock()
		err := s.delete(r.Version)
		s.mu.Lock()
		delete(s.busy, r.Version)
		s.mu.Unlock()
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
	s.mu.Lock()
	defer s.mu.Unlock()
	var held []string
	for _, v := range versions {
		if v == "" || slices.Contains(held, v) {
			continue
		}
		if what, busy := s.busy[v]; busy {
			for _, h := range held {
				delete(s.busy, h)
			}
			return nil, fmt.Errorf("%w: version %s is being %s right now", errConflict, v, what)
		}
		s.busy[v] = "activated"
		held = append(held, v)
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, h := range held {
			delete(s.busy, h)
		}
	}, nil
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

// State reads state.json; a missing file is the empty state.
func (s *Store) State() (agentState, error) {
	var st agentState
	data, err := os.ReadFile(s.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read agent state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("read agent state %s: %w", s.statePath(), err)
	}
	return st, nil
}

// SaveState writes state.json atomically.
func (s *Store) SaveState(st agentState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.statePath(), data, 0o644); err != nil {
		return fmt.Errorf("write agent state: %w", err)
	}
	return nil
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
