package nginx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/zerodown/zerodown/internal/lb"
)

// The variables a blue-green switch file sets: nginx's server blocks pass
// to the upstream they name,
//
//	location / { proxy_pass http://$zerodown_live; }     # users
//	location / { proxy_pass http://$zerodown_preview; }  # the preview
//
// and the file zerodown owns holds
//
//	map $host $zerodown_live { default blue; }
//	map $host $zerodown_preview { default green; }
const (
	VarLive    = "$zerodown_live"
	VarPreview = "$zerodown_preview"
)

// SwitchConfig is what the switch needs: the file zerodown owns, the two
// upstreams (pools), and how to test and reload nginx.
type SwitchConfig struct {
	File         string
	Pools        [2]string
	Test, Reload []string
	PidFile      string
}

// Switch is the lb.Switcher of two upstreams through a file of two maps:
// a switch rewrites it, tests and reloads nginx, and returns once the new
// workers serve; the old workers finish their requests on the upstream
// they had, every request after goes to the other.
type Switch struct {
	cfg SwitchConfig
	ctl ctl
}

var _ lb.Switcher = (*Switch)(nil)

// NewSwitch checks cfg; it touches neither the file nor nginx.
func NewSwitch(cfg SwitchConfig) (*Switch, error) {
	switch {
	case cfg.File == "":
		return nil, errors.New("nginx: the switch file is empty: the include file zerodown owns for blue-green, such as /etc/nginx/conf.d/app-bluegreen.conf")
	case cfg.Pools[0] == "" || cfg.Pools[1] == "" || cfg.Pools[0] == cfg.Pools[1]:
		return nil, fmt.Errorf("nginx: blue-green needs two upstreams, got %q and %q", cfg.Pools[0], cfg.Pools[1])
	case len(cfg.Test) == 0 || len(cfg.Reload) == 0 || cfg.PidFile == "":
		return nil, errors.New("nginx: the switch needs the test and reload commands and the pid file")
	}
	return &Switch{cfg: cfg, ctl: ctl{test: cfg.Test, reload: cfg.Reload, pidFile: cfg.PidFile, reloadWait: defaultReloadWait}}, nil
}

// read returns the file's snapshot and the upstream each variable names.
func (s *Switch) read() (snapshot, map[string]string, error) {
	data, err := os.ReadFile(s.cfg.File)
	if err != nil {
		return snapshot{}, nil, fmt.Errorf("nginx: read the switch file: %w (it holds `map $host %s { default %s; }` and the same for %s)",
			err, VarLive, s.cfg.Pools[0], VarPreview)
	}
	st, err := os.Stat(s.cfg.File)
	if err != nil {
		return snapshot{}, nil, err
	}
	p := &parser{file: s.cfg.File, data: data, line: 1}
	top, err := p.block(false)
	if err != nil {
		return snapshot{}, nil, err
	}
	vars := map[string]string{}
	for _, d := range top {
		if d.Name != "map" || !d.IsBlock || len(d.Args) != 2 {
			continue
		}
		for _, e := range d.Block {
			if e.Name == "default" && len(e.Args) == 1 {
				vars[d.Args[1]] = e.Args[0]
			}
		}
	}
	return snapshot{data: data, mode: st.Mode().Perm(), exists: true}, vars, nil
}

// Live is the upstream $zerodown_live names.
func (s *Switch) Live(context.Context) (string, error) {
	_, vars, err := s.read()
	if err != nil {
		return "", err
	}
	live, ok := vars[VarLive]
	if !ok {
		return "", fmt.Errorf("nginx: %s sets no %s: add `map $host %s { default %s; }` and pass users to http://%s", s.cfg.File, VarLive, VarLive, s.cfg.Pools[0], VarLive)
	}
	if live != s.cfg.Pools[0] && live != s.cfg.Pools[1] {
		return "", fmt.Errorf("nginx: %s sends live traffic to upstream %s, which is neither %s nor %s", s.cfg.File, live, s.cfg.Pools[0], s.cfg.Pools[1])
	}
	return live, nil
}

// SwitchLive rewrites the file with live traffic on pool and the preview
// on the other, and reloads nginx; a refused change puts the file back.
func (s *Switch) SwitchLive(ctx context.Context, pool string) error {
	other, err := lb.OtherPool(s.cfg.Pools, pool)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	unlock := lockFile(s.cfg.File)
	defer unlock()
	snap, _, err := s.read()
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# Written by zerodown, which owns this file: edits are overwritten.\n")
	b.WriteString("# Blue-green: users are passed to http://" + VarLive + ", the preview to http://" + VarPreview + ".\n")
	fmt.Fprintf(&b, "map $host %s { default %s; }\nmap $host %s { default %s; }\n", VarLive, pool, VarPreview, other)
	_, err = s.ctl.apply(ctx, "switch live traffic to "+pool, s.cfg.File, []byte(b.String()), snap)
	return err
}
