package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// savedState is the state file: each pool's targets, attached or detached,
// with their weights. It survives restarts so no registration is lost and a
// detached target stays detached, and listed, after a restart.
type savedState struct {
	Version int                      `json:"version"`
	Pools   map[string][]savedTarget `json:"pools"`
	// Config holds each pool's targets as the config file listed them when
	// the state was saved, so a restart applies what was edited in the file
	// since, the way a reload does.
	Config map[string][]savedTarget `json:"config,omitempty"`
	// Switches send a pool's routes to another pool (Server.Switch).
	Switches map[string]string `json:"switches,omitempty"`
}

// mergeConfigEdits applies to a pool's saved targets the edits made to its
// config targets between then (before) and now (after).
func mergeConfigEdits(saved, before, after []savedTarget) []savedTarget {
	was := map[string]int{}
	for _, t := range before {
		was[t.Address] = t.Weight
	}
	now := map[string]int{}
	for _, t := range after {
		now[t.Address] = t.Weight
	}
	out := make([]savedTarget, 0, len(saved)+len(after))
	have := map[string]bool{}
	for _, t := range saved {
		if _, listed := was[t.Address]; listed {
			if _, still := now[t.Address]; !still {
				continue // removed from the file
			}
		}
		if w, ok := now[t.Address]; ok && w != was[t.Address] {
			if _, listed := was[t.Address]; listed {
				t.Weight = w // weight edited in the file
			}
		}
		have[t.Address] = true
		out = append(out, t)
	}
	for _, t := range after {
		if _, listed := was[t.Address]; !listed && !have[t.Address] {
			out = append(out, t) // added to the file
		}
	}
	return out
}

type savedTarget struct {
	Address string `json:"address"`
	Weight  int    `json:"weight"`
	// Detached targets are kept so they stay out of rotation, and visible,
	// after a restart; files written before this field have none.
	Detached bool `json:"detached,omitempty"`
}

// stateVersion 2 added switches: an older zerodown refuses the file rather
// than drop them and send traffic back without a word. Version 1 files
// are read as they are.
const stateVersion = 2

// loadState reads the state file; a missing file is no error and returns nil.
func loadState(path string) (*savedState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %w (move it away to start from the config's targets)", path, err)
	}
	if st.Version != stateVersion && st.Version != 1 {
		return nil, fmt.Errorf("state file %s has version %d, this zerodown reads version %d", path, st.Version, stateVersion)
	}
	return &st, nil
}
