package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/server/api"
)

// FuzzAPIBodies sends any bytes as the body of every endpoint that reads
// JSON: the answer is never a crash or a 5xx, an error is JSON with a
// stable code, and a refused request leaves no run behind.
func FuzzAPIBodies(f *testing.F) {
	for _, seed := range []string{
		`{"env":"staging","version":"v1","sha256":"` + strings.Repeat("a", 64) + `"}`,
		`{"from":"staging","to":"staging"}`,
		`{"stage":"gate"}`,
		`{"name":"ci","role":"deployer"}`,
		`{"name":"ci","role":"root"}`,
		`{}`, `[]`, `null`, `{"env":1}`, `{"env":"staging"} {}`, "\x00", `{"version":"` + strings.Repeat("v", 5000) + `"}`,
	} {
		f.Add(seed)
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/api/v1/runs", "/api/v1/promote", "/api/v1/runs/r-none/approve", "/api/v1/tokens"} {
			req := httptest.NewRequest("POST", path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+fx.tokens[RoleAdmin])
			rec := httptest.NewRecorder()
			fx.srv.Handler().ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body)
			}
			if rec.Code >= 400 {
				var e api.Error
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
					t.Fatalf("POST %s %q: error body %q", path, body, rec.Body)
				}
			}
			if path == "/api/v1/runs" && rec.Code != http.StatusCreated {
				if runs, _ := fx.st.ListRuns(t.Context(), "", 0); len(runs) != 0 {
					t.Fatalf("a refused run left %d runs", len(runs))
				}
			}
		}
	})
}
