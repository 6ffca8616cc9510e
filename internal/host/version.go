package host

import (
	"fmt"
	"strings"
)

// CheckVersion accepts release versions that are safe as a file name, a
// URL path element and a log field on every host: up to 128 letters,
// digits, '.', '_', '+' and '-', starting with a letter or digit. The agent
// refuses anything else; the deploy checks the same before a run starts.
func CheckVersion(v string) error {
	ok := v != "" && len(v) <= 128
	for i, r := range v {
		alnum := '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
		if !alnum && (i == 0 || !strings.ContainsRune("._+-", r)) {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("version %q: use up to 128 letters, digits, '.', '_', '+' and '-', starting with a letter or digit", v)
	}
	if strings.HasSuffix(v, ".tmp") || strings.HasSuffix(v, ".json") {
		return fmt.Errorf("version %q: must not end in .tmp or .json, which the agent uses for its own files", v)
	}
	return nil
}
