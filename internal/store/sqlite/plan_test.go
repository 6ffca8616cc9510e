package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/store"
)

// TestRunQueryPlans: every filter QueryRuns takes, with and without a
// cursor, reads runs through an index in the order of the list and starts
// the page at the cursor, so a page costs about what it returns, not the
// number of runs; no scan of the table, no sort.
func TestRunQueryPlans(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []store.RunQuery{
		{},
		{Env: "staging"},
		{Status: store.RunRunning},
		{Version: "v2"},
		{Env: "staging", Status: store.RunFailed},
		{Env: "staging", Version: "v2"},
		{Env: "staging", Status: store.RunSucceeded, Version: "v2", Brief: true},
	} {
		for _, after := range []*cursor{nil, {startedAt: 1, id: "r-1"}} {
			q.Limit = 50
			query, args := runQuery(q, after)
			rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
			if err != nil {
				t.Fatal(err)
			}
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Close(); err != nil {
				t.Fatal(err)
			}
			p := strings.Join(plan, "; ")
			if len(plan) != 1 || !strings.Contains(p, " USING INDEX ") || (after != nil && !strings.Contains(p, "(started_at,id)<(?,?)")) {
				t.Errorf("QueryRuns(%+v, cursor %v): plan %q; want one search of an index, from the cursor", q, after != nil, p)
			}
		}
	}
}
