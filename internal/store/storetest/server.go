package storetest

// The contract of what zerodown server reads and keeps: held locks, run
// queries, API tokens, the audit log, the verifier's reports.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/store"
)

// testHolderLease: a lock keeps its holder's lease, and staleness is judged
// by it, whatever lease the one who finds the lock uses: a replica with a
// shorter lease does not find a live holder gone, one with a longer lease
// does not wait past the holder's.
func testHolderLease(t *testing.T, db Opener) {
	clk := newClock()
	s, other := db(clk.Now), db(clk.Now)
	const long, short = time.Minute, 10 * time.Second
	if l, err := s.AcquireLock(ctx, "staging", alice, "r-1", long); err != nil || l.Lease != long {
		t.Fatalf("AcquireLock with a %v lease = %+v, %v", long, l, err)
	}
	if _, err := s.AcquireLock(ctx, "production", alice, "r-2", short); err != nil {
		t.Fatal(err)
	}
	locks, err := other.Locks(ctx)
	if err != nil || len(locks) != 2 || locks[0].Lease != short || locks[1].Lease != long {
		t.Fatalf("Locks = %+v, %v; want production's lease %v and staging's %v", locks, err, short, long)
	}

	// 30s: past bob's short lease, within alice's long one.
	clk.Advance(30 * time.Second)
	_, err = other.AcquireLock(ctx, "staging", bob, "r-3", short)
	var le *store.LockedError
	if !errors.As(err, &le) || le.Stale || le.Lock.Lease != long {
		t.Fatalf("AcquireLock with a short lease of a lock 30s old held with a %v lease: %v, want a fresh *LockedError", long, err)
	}
	// production's holder has the short lease: 30s is past it, even for
	// someone whose own lease is long.
	_, err = other.AcquireLock(ctx, "production", bob, "r-4", long)
	if !errors.As(err, &le) || !le.Stale {
		t.Fatalf("AcquireLock with a long lease of a lock 30s old held with a %v lease: %v, want a stale *LockedError", short, err)
	}

	// A takeover stores the new holder's lease; a refresh, the lease asked.
	if l, err := other.TakeOverLock(ctx, "production", bob, "r-4", long, le.Lock.Lease); err != nil || l.Lease != long {
		t.Fatalf("TakeOverLock = %+v, %v; want the lock with a %v lease", l, err, long)
	}
	if l, err := s.AcquireLock(ctx, "staging", alice, "r-1", short); err != nil || l.Lease != short {
		t.Fatalf("AcquireLock again by the holder with a %v lease = %+v, %v", short, l, err)
	}
	if le := holder(t, s, "staging"); le.Lock.Lease != short {
		t.Errorf("staging's lease after the holder's refresh: %v, want %v", le.Lock.Lease, short)
	}
	if le := holder(t, s, "production"); le.Lock.Lease != long || le.Lock.Owner != bob {
		t.Errorf("production after the takeover: %+v, want bob's with a %v lease", le.Lock, long)
	}

	// A lease is needed to take a lock.
	if _, err := s.AcquireLock(ctx, "qa", alice, "r-5", 0); err == nil {
		t.Error("AcquireLock with no lease succeeded")
	}
	if _, err := s.TakeOverLock(ctx, "qa", alice, "r-5", long, 0); err == nil {
		t.Error("TakeOverLock with no staleAfter succeeded")
	}
}

// testHeldLocks: Locks lists every held lock by environment, with the age
// of its heartbeat by the clock of the store that reads it.
func testHeldLocks(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	ahead := db(func() time.Time { return clk.Now().Add(time.Minute) }) // a replica whose clock is ahead
	const stale = 30 * time.Second

	if locks, err := s.Locks(ctx); err != nil || len(locks) != 0 {
		t.Fatalf("Locks with none held = %+v, %v; want none", locks, err)
	}
	t0 := clk.Now()
	if _, err := s.AcquireLock(ctx, "staging", alice, "r-1", stale); err != nil {
		t.Fatal(err)
	}
	t1 := clk.Advance(10 * time.Second)
	if _, err := s.AcquireLock(ctx, "production", bob, "r-2", stale); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Second)

	type held struct {
		env, owner, run  string
		since, heartbeat time.Time
		age              time.Duration
	}
	check := func(s store.Store, when string, want []held) {
		t.Helper()
		locks, err := s.Locks(ctx)
		if err != nil {
			t.Fatalf("Locks %s: %v", when, err)
		}
		if len(locks) != len(want) {
			t.Fatalf("Locks %s = %+v; want %d locks", when, locks, len(want))
		}
		for i, w := range want {
			checkLock(t, locks[i].Lock, w.env, w.owner, w.run, w.since, w.heartbeat)
			if locks[i].Age != w.age {
				t.Errorf("Locks %s: %s age %v, want %v", when, w.env, locks[i].Age, w.age)
			}
		}
	}
	check(s, "after two acquires", []held{
		{"production", bob, "r-2", t1, t1, 5 * time.Second},
		{"staging", alice, "r-1", t0, t0, 15 * time.Second},
	})
	check(ahead, "by a clock a minute ahead", []held{
		{"production", bob, "r-2", t1, t1, time.Minute + 5*time.Second},
		{"staging", alice, "r-1", t0, t0, time.Minute + 15*time.Second},
	})

	t2 := clk.Advance(time.Second)
	if err := s.Heartbeat(ctx, "staging", alice, "r-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLock(ctx, "production", bob, "r-2"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	check(s, "after a heartbeat and a release", []held{{"staging", alice, "r-1", t0, t2, 2 * time.Second}})
}

// queryFixture writes runs for the QueryRuns tests and returns their IDs
// newest first, as every list is sorted: r[0] to r[6]. r[2] and r[3]
// started in the same microsecond, so their IDs order them.
func queryFixture(t *testing.T, s store.Store) []string {
	t.Helper()
	r := []string{
		"r-20261125-181208-0000", "r-20261125-181207-0000", "r-20261125-181206-bbbb",
		"r-20261125-181206-aaaa", "r-20261125-181205-0000", "r-20261125-181204-0000", "r-20261125-181203-0000",
	}
	for _, run := range []store.Run{
		{ID: r[6], Env: "staging", Status: store.RunRunning, Version: "v1"},
		{ID: r[5], Env: "production", Status: store.RunSucceeded, Version: "v1"},
		{ID: r[4], Env: "staging", Status: store.RunFailed, Version: "v2"},
		{ID: r[3], Env: "staging", Status: store.RunSucceeded, Version: "v2"},
		{ID: r[2], Env: "staging", Status: store.RunSucceeded, Version: "v2"},
		{ID: r[1], Env: "staging", Status: store.RunSucceeded, Version: "v2"},
		{ID: r[0], Env: "production", Status: store.RunRunning, Version: "v2"},
	} {
		// The start is the ID's second, and a fraction the IDs do not show.
		started, err := time.Parse("20060102-150405", run.ID[2:17])
		if err != nil {
			t.Fatal(err)
		}
		run.StartedAt = started.Add(250 * time.Millisecond)
		run.Plan, run.Spec = []byte(`{"stages": []}`), []byte(`{"name": "hello"}`)
		if _, err := s.CreateRun(ctx, run); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := s.ListRuns(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, run := range runs {
		ids = append(ids, run.ID)
	}
	if !reflect.DeepEqual(ids, r) {
		t.Fatalf("ListRuns = %v; want %v", ids, r)
	}
	return r
}

func testQueryRuns(t *testing.T, db Opener) {
	s := db(newClock().Now)
	r := queryFixture(t, s)
	for _, tt := range []struct {
		name string
		q    store.RunQuery
		want []string
	}{
		{"all", store.RunQuery{}, r},
		{"limit", store.RunQuery{Limit: 3}, r[:3]},
		{"negative limit", store.RunQuery{Limit: -1}, r},
		{"environment", store.RunQuery{Env: "staging"}, []string{r[1], r[2], r[3], r[4], r[6]}},
		{"status", store.RunQuery{Status: store.RunRunning}, []string{r[0], r[6]}},
		{"version", store.RunQuery{Version: "v1"}, []string{r[5], r[6]}},
		{"all filters", store.RunQuery{Env: "staging", Status: store.RunSucceeded, Version: "v2"}, []string{r[1], r[2], r[3]}},
		{"all filters, limit", store.RunQuery{Env: "staging", Status: store.RunSucceeded, Version: "v2", Limit: 2}, []string{r[1], r[2]}},
		{"no match", store.RunQuery{Env: "qa"}, nil},
		{"before", store.RunQuery{Before: r[1]}, r[2:]},
		{"before a run of the same instant", store.RunQuery{Before: r[2]}, r[3:]},
		{"before, limit", store.RunQuery{Before: r[3], Limit: 1}, r[4:5]},
		{"before a run the filter leaves out", store.RunQuery{Env: "production", Before: r[2]}, []string{r[5]}},
		{"before the oldest", store.RunQuery{Before: r[6]}, nil},
		{"brief", store.RunQuery{Brief: true, Status: store.RunFailed}, []string{r[4]}},
	} {
		runs, err := s.QueryRuns(ctx, tt.q)
		if err != nil {
			t.Errorf("%s: QueryRuns(%+v): %v", tt.name, tt.q, err)
			continue
		}
		var got []string
		for _, run := range runs {
			got = append(got, run.ID)
			want, err := s.GetRun(ctx, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tt.q.Brief {
				want.Plan, want.Spec = nil, nil
				if run.Plan != nil || run.Spec != nil {
					t.Errorf("%s: brief run %s has plan %s, spec %s; want neither", tt.name, run.ID, run.Plan, run.Spec)
				}
			}
			checkRun(t, run, want)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: QueryRuns(%+v) = %v, want %v", tt.name, tt.q, got, tt.want)
		}
	}

	for _, tt := range []struct {
		name     string
		q        store.RunQuery
		notFound bool
	}{
		{"unknown status", store.RunQuery{Status: "done"}, false},
		{"pending is not a run status", store.RunQuery{Status: store.RunStatus(store.TaskPending)}, false},
		{"before an unknown run", store.RunQuery{Env: "staging", Before: "r-20261125-181203-dead"}, true},
	} {
		runs, err := s.QueryRuns(ctx, tt.q)
		if err == nil || errors.Is(err, store.ErrNotFound) != tt.notFound {
			t.Errorf("%s: QueryRuns = %d runs, %v; want an error (ErrNotFound: %v)", tt.name, len(runs), err, tt.notFound)
		}
	}
}

// testQueryPages: paging with Before through a list gives every run once,
// in order, also across runs of one instant, and a run started meanwhile
// (newer than every page) does not shift the pages after the first.
func testQueryPages(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	r := queryFixture(t, s)
	pages := func(q store.RunQuery, meanwhile func()) []string {
		t.Helper()
		var ids []string
		for page := 0; page <= len(r); page++ {
			runs, err := s.QueryRuns(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) > q.Limit {
				t.Fatalf("QueryRuns(%+v) = %d runs, more than the limit", q, len(runs))
			}
			if len(runs) == 0 {
				return ids
			}
			for _, run := range runs {
				ids = append(ids, run.ID)
			}
			q.Before = runs[len(runs)-1].ID
			if page == 0 && meanwhile != nil {
				meanwhile()
			}
		}
		t.Fatalf("QueryRuns(%+v): still paging after %d pages: %v", q, len(r)+1, ids)
		return nil
	}
	for _, tt := range []struct {
		q    store.RunQuery
		want []string
	}{
		{store.RunQuery{Limit: 1}, r},
		{store.RunQuery{Limit: 2}, r},
		{store.RunQuery{Limit: 3, Brief: true}, r},
		{store.RunQuery{Env: "staging", Limit: 2}, []string{r[1], r[2], r[3], r[4], r[6]}},
		{store.RunQuery{Version: "v2", Status: store.RunSucceeded, Limit: 2}, []string{r[1], r[2], r[3]}},
	} {
		if got := pages(tt.q, nil); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("pages of QueryRuns(%+v) = %v, want %v", tt.q, got, tt.want)
		}
	}

	got := pages(store.RunQuery{Limit: 2}, func() {
		clk.Advance(time.Hour)
		mustRun(t, s, "staging")
	})
	if !reflect.DeepEqual(got, r) {
		t.Errorf("pages of QueryRuns with a run started after the first = %v, want %v", got, r)
	}
}

// checkToken reports where got differs from want.
func checkToken(t *testing.T, what string, got, want store.Token) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Role != want.Role || !bytes.Equal(got.Hash, want.Hash) ||
		got.CreatedBy != want.CreatedBy || !sameTime(got.CreatedAt, want.CreatedAt) || !sameTime(got.RevokedAt, want.RevokedAt) {
		t.Errorf("%s:\n got %+v\nwant %+v (times in UTC)", what, got, want)
	}
}

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func testTokens(t *testing.T, db Opener) {
	clk := newClock()
	s, other := db(clk.Now), db(clk.Now) // as two replicas

	gocd := store.Token{ID: "k1", Name: "gocd", Role: "deployer", Hash: hash("s1"), CreatedBy: "admin"}
	got, err := s.CreateToken(ctx, gocd)
	if err != nil {
		t.Fatal(err)
	}
	gocd.CreatedAt = start // filled in by the store's clock
	checkToken(t, "CreateToken", got, gocd)

	// A time given is kept to the microsecond, in UTC.
	clk.Advance(time.Minute)
	alice := store.Token{ID: "k2", Name: "alice", Role: "admin", Hash: hash("s2"), CreatedBy: "zerodown token create",
		CreatedAt: time.Date(2026, 11, 25, 18, 0, 0, 123_456_789, time.FixedZone("CET", 3600))}
	got, err = other.CreateToken(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	alice.CreatedAt = time.Date(2026, 11, 25, 17, 0, 0, 123_456_000, time.UTC)
	checkToken(t, "CreateToken with a creation time", got, alice)

	for _, tt := range []struct {
		name string
		tok  store.Token
		msg  string
	}{
		{"name in use", store.Token{ID: "k3", Name: "gocd", Role: "viewer", Hash: hash("s3")}, "create token gocd: already exists"},
		{"ID in use", store.Token{ID: "k1", Name: "carol", Role: "viewer", Hash: hash("s3")}, "create token carol: ID k1 already exists"},
	} {
		if _, err := s.CreateToken(ctx, tt.tok); !errors.Is(err, store.ErrExists) || err.Error() != tt.msg {
			t.Errorf("CreateToken, %s: %v; want %q (ErrExists)", tt.name, err, tt.msg)
		}
	}

	// Revoked now, by whichever replica; revoking again keeps the time.
	revoked := clk.Advance(time.Minute)
	got, err = s.RevokeToken(ctx, "k1")
	gocd.RevokedAt = revoked
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, "RevokeToken", got, gocd)
	clk.Advance(time.Minute)
	got, err = other.RevokeToken(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, "RevokeToken again", got, gocd)

	for _, want := range []store.Token{gocd, alice} {
		got, err := other.GetToken(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkToken(t, "GetToken", got, want)
	}
	tokens, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 2 {
		t.Fatalf("ListTokens = %+v; want alice's and gocd's, oldest first", tokens)
	}
	checkToken(t, "ListTokens[0]", tokens[0], alice)
	checkToken(t, "ListTokens[1]", tokens[1], gocd)

	for _, tt := range []struct {
		name string
		call func() error
	}{
		{"GetToken", func() error { _, err := s.GetToken(ctx, "k9"); return err }},
		{"RevokeToken", func() error { _, err := s.RevokeToken(ctx, "k9"); return err }},
	} {
		if err := tt.call(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of an unknown token: %v, want ErrNotFound", tt.name, err)
		}
	}
}

// testInvalidTokens: a token without what identifies or authorises it is
// refused before anything is written.
func testInvalidTokens(t *testing.T, db Opener) {
	s := db(newClock().Now)
	valid := store.Token{ID: "k1", Name: "gocd", Role: "deployer", Hash: hash("s1")}
	for _, tt := range []struct {
		name   string
		change func(*store.Token)
	}{
		{"no ID", func(t *store.Token) { t.ID = "" }},
		{"no name", func(t *store.Token) { t.Name = "" }},
		{"no role", func(t *store.Token) { t.Role = "" }},
		{"no hash", func(t *store.Token) { t.Hash = nil }},
		{"empty hash", func(t *store.Token) { t.Hash = []byte{} }},
	} {
		tok := valid
		tt.change(&tok)
		if got, err := s.CreateToken(ctx, tok); err == nil || errors.Is(err, store.ErrExists) {
			t.Errorf("CreateToken with %s = %+v, %v; want it refused", tt.name, got, err)
		}
	}
	if tokens, err := s.ListTokens(ctx); err != nil || len(tokens) != 0 {
		t.Errorf("after invalid tokens, ListTokens = %+v, %v; want none", tokens, err)
	}
}

func testAudit(t *testing.T, db Opener) {
	clk := newClock()
	handles := []store.Store{db(clk.Now), db(clk.Now)} // as two replicas
	if entries, err := handles[0].Audit(ctx, 0, 0); err != nil || len(entries) != 0 {
		t.Fatalf("Audit of an empty log = %+v, %v; want none", entries, err)
	}

	at := time.Date(2026, 11, 25, 19, 0, 0, 999_999_999, time.FixedZone("CET", 3600))
	var want []store.AuditEntry // oldest first
	for i, a := range []store.AuditEntry{
		{Actor: "gocd", Action: "run.create", Target: "staging", Detail: "version v2", Remote: "10.0.0.7:51234"},
		{Actor: "alice", Action: "run.approve", Target: "r-20261125-181203-ab12", Detail: "stage promote", Remote: "[::1]:40000"},
		{Actor: "server", Action: "run.resume", Target: "r-20261125-181203-ab12", At: at},
		{Actor: "alice", Action: "token.revoke", Target: "k1"},
	} {
		now := clk.Advance(time.Second)
		got, err := handles[i%2].AppendAudit(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		a.Seq = int64(i + 1)
		if a.At.IsZero() {
			a.At = now
		}
		a.At = store.Micro(a.At)
		if !sameTime(got.At, a.At) || got.Seq != a.Seq {
			t.Errorf("AppendAudit %d: seq %d at %v, want %d at %v", i, got.Seq, got.At, a.Seq, a.At)
		}
		want = append(want, a)
	}
	if got, err := handles[0].AppendAudit(ctx, store.AuditEntry{Actor: "alice", Target: "k1"}); err == nil {
		t.Errorf("AppendAudit without an action = seq %d; want an error", got.Seq)
	}

	newestFirst := func(seqs ...int) []store.AuditEntry {
		var es []store.AuditEntry
		for _, seq := range seqs {
			es = append(es, want[seq-1])
		}
		return es
	}
	for _, tt := range []struct {
		before int64
		limit  int
		want   []store.AuditEntry
	}{
		{0, 0, newestFirst(4, 3, 2, 1)},
		{-1, -1, newestFirst(4, 3, 2, 1)},
		{0, 2, newestFirst(4, 3)},
		{3, 0, newestFirst(2, 1)},
		{3, 1, newestFirst(2)},
		{99, 0, newestFirst(4, 3, 2, 1)},
		{1, 0, nil},
	} {
		got, err := handles[1].Audit(ctx, tt.before, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("Audit(%d, %d) = %+v, want %+v", tt.before, tt.limit, got, tt.want)
			continue
		}
		for i := range got {
			g, w := got[i], tt.want[i]
			if !sameTime(g.At, w.At) {
				t.Errorf("Audit(%d, %d)[%d] at %v, want %v (UTC)", tt.before, tt.limit, i, g.At, w.At)
			}
			g.At, w.At = time.Time{}, time.Time{}
			if g != w {
				t.Errorf("Audit(%d, %d)[%d]:\n got %+v\nwant %+v", tt.before, tt.limit, i, g, w)
			}
		}
	}

	// The refused entry used no number.
	if a, err := handles[1].AppendAudit(ctx, store.AuditEntry{Actor: "bob", Action: "run.abort"}); err != nil || a.Seq != 5 {
		t.Errorf("AppendAudit after a refused one: seq %d, %v; want 5", a.Seq, err)
	}
}

// testReports: a run's verifier report is kept whole, read from another
// handle (another replica), replaced by a later one (a resumed run), and
// only for a run the journal has.
func testReports(t *testing.T, db Opener) {
	clk := newClock()
	s, other := db(clk.Now), db(clk.Now)
	r, err := s.CreateRun(ctx, store.Run{Env: "staging", Version: "v2", Owner: alice})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Report(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Report before one is kept: %v, want ErrNotFound", err)
	}
	if has, err := other.HasReport(ctx, r.ID); has || err != nil {
		t.Errorf("HasReport before one is kept = %v, %v", has, err)
	}
	// Every byte value, and more than a page: HTML is bytes to the store.
	page := make([]byte, 70000)
	for i := range page {
		page[i] = byte(i)
	}
	t0 := clk.Now()
	if err := s.PutReport(ctx, r.ID, page); err != nil {
		t.Fatal(err)
	}
	got, err := other.Report(ctx, r.ID)
	if err != nil || got.RunID != r.ID || !bytes.Equal(got.HTML, page) || !sameTime(got.At, t0) {
		t.Fatalf("Report = %s, %d bytes (equal %v), at %v, %v; want the %d bytes kept at %v", got.RunID, len(got.HTML), bytes.Equal(got.HTML, page), got.At, err, len(page), t0)
	}
	if has, err := other.HasReport(ctx, r.ID); !has || err != nil {
		t.Errorf("HasReport once kept = %v, %v", has, err)
	}
	t1 := clk.Advance(time.Minute)
	if err := other.PutReport(ctx, r.ID, []byte("<p>resumed</p>")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Report(ctx, r.ID); err != nil || string(got.HTML) != "<p>resumed</p>" || !sameTime(got.At, t1) {
		t.Errorf("Report after a second PutReport = %q at %v, %v; want the second, at %v", got.HTML, got.At, err, t1)
	}
	if err := s.PutReport(ctx, "r-nope", page); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutReport of an unknown run: %v, want ErrNotFound", err)
	}
	if _, err := s.Report(ctx, "r-nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Report of an unknown run: %v, want ErrNotFound", err)
	}
	if has, err := s.HasReport(ctx, "r-nope"); has || err != nil {
		t.Errorf("HasReport of an unknown run = %v, %v", has, err)
	}
}

// testPruneRuns: runs that ended before the cut-off go with everything
// journaled about them, except each environment's newest and any run still
// running or needing attention.
func testPruneRuns(t *testing.T, db Opener) {
	clk := newClock()
	s := db(clk.Now)
	made := map[string]string{} // run ID by name
	var longRun store.Run
	run := func(name, env string, status store.RunStatus) {
		t.Helper()
		r := store.Run{Env: env, Version: name, Owner: alice, Status: status}
		if status != store.RunRunning {
			r.EndedAt = clk.Now().Add(time.Minute)
		}
		r, err := s.CreateRun(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		made[name] = r.ID
		if name == "s0" {
			longRun = r
		}
		clk.Advance(time.Hour)
	}
	// Oldest first, an hour apart. s0 waits for an approval until the end.
	run("s0", "staging", store.RunRunning)
	run("s1", "staging", store.RunSucceeded)
	run("s2", "staging", store.RunFailed)
	run("p1", "production", store.RunSucceeded)
	run("s3", "staging", store.RunNeedsAttention)
	run("s4", "staging", store.RunRunning) // a run left running (its executor died)
	run("s5", "staging", store.RunRolledBack)
	run("p2", "production", store.RunAborted)
	cut := clk.Now().Add(-90 * time.Minute) // p2 and s5 are newer
	run("s6", "staging", store.RunSucceeded)
	run("p3", "production", store.RunSucceeded)
	// s0, the oldest, ends now: after the cut-off, so it stays.
	if err := s.UpdateRun(ctx, longRun.ID, store.RunUpdate{Status: store.RunSucceeded, EndedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}

	// Everything journaled about s1 goes with it.
	s1 := made["s1"]
	if _, err := s.StartTask(ctx, store.TaskRecord{RunID: s1, Stage: "update", Job: "web-1", Kind: "deploy", Host: "web-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvent(ctx, store.Event{RunID: s1, Type: "info", Message: "hello"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Approve(ctx, s1, "gate", bob); err != nil {
		t.Fatal(err)
	}
	if err := s.PutReport(ctx, s1, []byte("<p>report</p>")); err != nil {
		t.Fatal(err)
	}

	// keep 2: staging's newest two (s6, s5) and production's (p3, p2) stay;
	// of the older, s3 needs attention, s4 runs and s0 ended after the
	// cut-off. Two at a time: the oldest first.
	pruned, err := s.PruneRuns(ctx, cut, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{made["s1"], made["s2"]}; !slices.Equal(pruned, want) {
		t.Fatalf("PruneRuns of 2 = %v, want the oldest two %v (s1, s2)", pruned, want)
	}
	if pruned, err = s.PruneRuns(ctx, cut, 2, 2); err != nil || !slices.Equal(pruned, []string{made["p1"]}) {
		t.Fatalf("PruneRuns of the next 2 = %v, %v; want p1 alone", pruned, err)
	}
	want := []string{made["p1"], made["s1"], made["s2"]}
	for name, id := range made {
		_, err := s.GetRun(ctx, id)
		if gone := slices.Contains(want, id); gone != errors.Is(err, store.ErrNotFound) {
			t.Errorf("run %s (%s) after the prune: %v", name, id, err)
		}
	}
	if tasks, err := s.Tasks(ctx, s1); err == nil && len(tasks) > 0 {
		t.Errorf("s1's tasks outlived it: %+v", tasks)
	}
	if events, err := s.Events(ctx, s1, 0); err == nil && len(events) > 0 {
		t.Errorf("s1's events outlived it: %+v", events)
	}
	if _, ok, err := s.Approved(ctx, s1, "gate"); ok && err == nil {
		t.Error("s1's approval outlived it")
	}
	if has, err := s.HasReport(ctx, s1); has || err != nil {
		t.Errorf("s1's report outlived it: %v, %v", has, err)
	}

	// Again: nothing more is old enough. keep 0 keeps none for its own sake,
	// but never a running run or one needing attention.
	if pruned, err := s.PruneRuns(ctx, cut, 2, 100); err != nil || len(pruned) != 0 {
		t.Errorf("PruneRuns again = %v, %v; want nothing", pruned, err)
	}
	pruned, err = s.PruneRuns(ctx, clk.Now().Add(time.Second), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{made["s0"], made["s5"], made["s6"], made["p2"], made["p3"]}
	slices.Sort(want)
	if !slices.Equal(pruned, want) {
		t.Errorf("PruneRuns of everything = %v, want %v", pruned, want)
	}
	left, err := s.ListRuns(ctx, "", 0)
	if err != nil || len(left) != 2 {
		t.Errorf("runs left = %+v, %v; want s3 (needs attention) and s4 (running)", left, err)
	}

	for _, bad := range []struct {
		before      time.Time
		keep, limit int
	}{{time.Time{}, 1, 1}, {clk.Now(), -1, 1}, {clk.Now(), 1, 0}} {
		if _, err := s.PruneRuns(ctx, bad.before, bad.keep, bad.limit); err == nil {
			t.Errorf("PruneRuns(%v, %d, %d) succeeded", bad.before, bad.keep, bad.limit)
		}
	}
}
