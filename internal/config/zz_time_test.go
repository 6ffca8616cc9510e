package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTimeCorpus(t *testing.T) {
	files, _ := filepath.Glob("/root/.cache/go-build/fuzz/github.com/zerodown/zerodown/internal/config/FuzzParseLB/*")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		s := string(b)
		s = s[strings.Index(s, "string(")+7 : strings.LastIndex(s, ")")]
		doc, err := strconv.Unquote(s)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ParseLB("f.yaml", []byte(doc))
		if d := time.Since(start); d > 20*time.Millisecond {
			t.Logf("%s: %v len %d", filepath.Base(f), d, len(doc))
		}
	}
}
