package exechost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/zerodown/zerodown/internal/atomicfile"
)

// record is what zerodown last did to an exec host, kept in a file beside
// the journal: the version a deploy replaced is what a rollback goes back
// to, also when it is another zerodown process that rolls back (zerodown
// rollback RUN of a run whose process died).
type record struct {
	// Version is what zerodown last put on the host, by a deploy (written
	// before its script runs) or a rollback (after its script passed).
	Version  string `json:"version"`
	Artifact string `json:"artifact,omitempty"`
	// Previous is what the host ran before that deploy; empty when
	// unknown or after a rollback.
	Previous         string `json:"previous,omitempty"`
	PreviousArtifact string `json:"previous_artifact,omitempty"`
}

func readRecord(path string) (record, error) {
	var r record
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil // nothing done to the host yet
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("%s is not zerodown's record of the host (%v): remove it, and zerodown knows nothing of what it deployed there", path, err)
	}
	return r, nil
}

func writeRecord(path string, r record) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}
