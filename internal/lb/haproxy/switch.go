package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/zerodown/zerodown/internal/atomicfile"
	"github.com/zerodown/zerodown/internal/lb"
)

// Map keys of a blue-green map: the frontends choose their backend with
//
//	use_backend %[str(live),map(/etc/haproxy/bluegreen.map)]     # users
//	use_backend %[str(preview),map(/etc/haproxy/bluegreen.map)]  # the preview
//
// and the map holds "live blue" and "preview green".
const (
	MapKeyLive    = "live"
	MapKeyPreview = "preview"
)

// MapSwitcher is the lb.Switcher of two HAProxy backends chosen through a
// map: `set map` changes the entry HAProxy's use_backend rule reads, so
// every request after it goes to the other backend and the ones in flight
// finish where they are. The map's file is rewritten too (when it is on
// this machine), so a reload of HAProxy keeps the switch.
type MapSwitcher struct {
	rt    *Runtime
	path  string
	pools [2]string
}

var _ lb.Switcher = (*MapSwitcher)(nil)

// NewMapSwitcher returns the switcher of the map at path (as HAProxy names
// it) between two backends.
func NewMapSwitcher(socket, path string, pools [2]string) (*MapSwitcher, error) {
	rt, err := NewRuntime(socket)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("haproxy: the blue-green map's path is empty")
	}
	if pools[0] == "" || pools[1] == "" || pools[0] == pools[1] {
		return nil, fmt.Errorf("haproxy: blue-green needs two backends, got %q and %q", pools[0], pools[1])
	}
	return &MapSwitcher{rt: rt, path: path, pools: pools}, nil
}

// entries reads the map as HAProxy holds it now.
func (m *MapSwitcher) entries(ctx context.Context) (map[string]string, error) {
	out, err := m.rt.Command(ctx, "show map "+m.path)
	if err != nil {
		return nil, err
	}
	return parseShowMap(m.path, out)
}

// parseShowMap reads `show map`'s lines: "0x55d0c1a2b3c0 live blue".
func parseShowMap(path, out string) (map[string]string, error) {
	entries := map[string]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 3 || !strings.HasPrefix(f[0], "0x") {
			return nil, fmt.Errorf("haproxy: show map %s: %s", path, firstLine(line))
		}
		// A value may hold spaces: it is the rest of the line.
		rest := strings.TrimSpace(line)
		for _, field := range f[:2] {
			rest = strings.TrimLeft(strings.TrimPrefix(rest, field), " \t")
		}
		entries[f[1]] = strings.TrimSpace(rest)
	}
	return entries, nil
}

// Live is the backend the map's live entry names.
func (m *MapSwitcher) Live(ctx context.Context) (string, error) {
	e, err := m.entries(ctx)
	if err != nil {
		return "", err
	}
	live, ok := e[MapKeyLive]
	if !ok {
		return "", fmt.Errorf("haproxy: map %s has no %q entry: add the line \"%s %s\" to it and choose the users' backend with use_backend %%[str(%s),map(%s)]",
			m.path, MapKeyLive, MapKeyLive, m.pools[0], MapKeyLive, m.path)
	}
	if live != m.pools[0] && live != m.pools[1] {
		return "", fmt.Errorf("haproxy: map %s sends live traffic to backend %s, which is neither %s nor %s", m.path, live, m.pools[0], m.pools[1])
	}
	return live, nil
}

// SwitchLive sets the live entry first, so users switch in one command,
// then the preview entry, then the file.
func (m *MapSwitcher) SwitchLive(ctx context.Context, pool string) error {
	other, err := lb.OtherPool(m.pools, pool)
	if err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	e, err := m.entries(ctx)
	if err != nil {
		return err
	}
	if _, ok := e[MapKeyLive]; !ok {
		return fmt.Errorf("haproxy: map %s has no %q entry", m.path, MapKeyLive)
	}
	if err := m.rt.set(ctx, fmt.Sprintf("set map %s %s %s", m.path, MapKeyLive, pool)); err != nil {
		return err
	}
	if _, ok := e[MapKeyPreview]; ok {
		if err := m.rt.set(ctx, fmt.Sprintf("set map %s %s %s", m.path, MapKeyPreview, other)); err != nil {
			return fmt.Errorf("live traffic switched to %s, but the preview was not: %w", pool, err)
		}
	}
	if err := rewriteMapFile(m.path, map[string]string{MapKeyLive: pool, MapKeyPreview: other}); err != nil {
		return fmt.Errorf("live traffic switched to %s, but a reload of HAProxy would switch it back: %w", pool, err)
	}
	return nil
}

// rewriteMapFile sets keys in the map file HAProxy loads at start, keeping
// every other line; a key the file lacks is left out of it (HAProxy lacks
// it too). A map that is not on this machine (HAProxy elsewhere, reached
// over TCP) is left alone.
func rewriteMapFile(path string, set map[string]string) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	var b strings.Builder
	for line := range strings.Lines(string(raw)) {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			if v, ok := set[f[0]]; ok {
				line = f[0] + " " + v + "\n"
			}
		}
		b.WriteString(line)
	}
	return atomicfile.Write(path, []byte(b.String()), st.Mode().Perm())
}
