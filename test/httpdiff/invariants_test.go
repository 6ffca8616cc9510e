package httpdiff

import (
	"fmt"
	"sort"
	"strings"
)

// The invariants every proxy must keep, whatever bytes its clients and
// backends send:
//
//  1. Every client gets its own answer (the id it sent comes back) or an
//     error status or a closed connection, never another request's answer.
//     In strict cases, where the backend answers well, only its own answer.
//  2. Each message has exactly one framing: the backend never sees two
//     Content-Length fields, Content-Length beside Transfer-Encoding, a
//     malformed length or chunk size, a head other parsers would read
//     differently (obs-fold, bare CR or LF, control bytes, a malformed
//     request line), or other than one Host; clients never get such an
//     answer either.
//  3. Nothing reaches the backend as a request that the client did not send
//     as one: a request hidden in another's body is either answered to its
//     client as a pipelined request or never parsed; and a request that is
//     not idempotent reaches the backend at most once.
//  4. An answer cut short upstream never looks complete to the client.
//
// Invariant 0 stands for the harness and for crashes: a proxy that could
// not be driven at all, or recovered from a panic.

type violation struct {
	inv int
	msg string
}

func (v violation) String() string { return fmt.Sprintf("invariant %d: %s", v.inv, v.msg) }

// result is the verdict on one case for one proxy.
type result struct {
	outcome    string
	violations []violation
	notes      []string
}

func (r *result) add(inv int, format string, args ...any) {
	v := violation{inv, fmt.Sprintf(format, args...)}
	for _, old := range r.violations {
		if old == v {
			return
		}
	}
	r.violations = append(r.violations, v)
}

func (r *result) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *result) harness(err error) {
	r.outcome = "harness error"
	r.add(0, "%v", err)
}

// verdict is the invariants column: ok, or the numbers that failed.
func (r *result) verdict() string {
	if len(r.violations) == 0 {
		return "ok"
	}
	seen := map[int]bool{}
	var nums []int
	for _, v := range r.violations {
		if !seen[v.inv] {
			seen[v.inv] = true
			nums = append(nums, v.inv)
		}
	}
	sort.Ints(nums)
	s := make([]string, len(nums))
	for i, n := range nums {
		s[i] = fmt.Sprint(n)
	}
	return "FAIL " + strings.Join(s, ",")
}

func check(res *result, c *caseSpec, p plan, ids caseIDs, x *exchange, recs []record) {
	// Invariant 1.
	all := append(append([]sent(nil), p.reqs...), p.maybe...)
	for i, s := range all {
		var rep *reply
		if i < len(x.replies) {
			rep = x.replies[i]
		}
		strict := c.strict && i < len(p.reqs)
		if i >= len(p.reqs) && rep == nil {
			continue
		}
		ownAnswer(res, "request "+s.id, s.id, rep, strict)
	}
	if len(p.echo) > 0 && x.echo != "ok" && c.strict {
		res.add(1, "the upgraded connection did not echo: %s", x.echo)
	}
	for i, rep := range x.keep {
		ownAnswer(res, "keep-alive follow-up "+x.keepIDs[i], x.keepIDs[i], rep, false)
	}
	for i, rep := range x.fresh {
		ownAnswer(res, "follow-up "+x.freshIDs[i], x.freshIDs[i], rep, true)
	}

	// Invariant 2.
	for _, r := range recs {
		for _, a := range r.anomalies {
			res.add(2, "backend got %s (%s) with %s", orAnon(r.id), truncate(r.line()), a)
		}
	}
	for _, rep := range append(append(append([]*reply(nil), x.replies...), x.keep...), x.fresh...) {
		for _, a := range rep.anomalies {
			res.add(2, "a client got an answer (%d, id %s) with %s", rep.status, orAnon(rep.id), a)
		}
	}

	// Invariant 3.
	known := map[string]bool{}
	for _, s := range p.reqs {
		known[s.id] = true
	}
	followUp := map[string]bool{}
	for _, id := range append(append([]string(nil), x.keepIDs...), x.freshIDs...) {
		known[id] = true
		followUp[id] = true
	}
	hiddenIDs := map[string]bool{}
	for _, s := range p.maybe {
		hiddenIDs[s.id] = true
	}
	answered := map[string]bool{}
	for _, rep := range x.replies {
		answered[rep.id] = true
	}
	seen := map[string]int{}
	method := map[string]string{}
	mainAtBackend := 0
	for _, r := range recs {
		switch {
		case known[r.id]:
		case hiddenIDs[r.id]:
			if !answered[r.id] {
				res.add(3, "%s (%s) reached the backend as a request of its own while the client never got its answer: it was hidden in %s's bytes", r.id, truncate(r.line()), ids.A)
			}
		case strings.HasPrefix(r.id, ids.rig) && !strings.HasPrefix(r.id, ids.prefix):
			// Sent through this proxy for another case or a readiness
			// check: late, but not smuggled.
			res.note("backend got %s (%s) during a later case", r.id, truncate(r.line()))
			continue
		default:
			res.add(3, "the backend parsed a request no client sent: %q", truncate(r.line()))
		}
		if !followUp[r.id] {
			mainAtBackend++
		}
		seen[r.id]++
		method[r.id] = r.method
	}
	for id, n := range seen {
		if n < 2 {
			continue
		}
		if idempotent(method[id]) {
			res.note("%s %s reached the backend %d times", method[id], id, n)
		} else {
			res.add(3, "%s %s reached the backend %d times: it was sent again after it was written", method[id], id, n)
		}
	}

	// Invariant 4.
	if c.cut && len(x.replies) > 0 {
		rep := x.replies[0]
		res.note("the answer cut short upstream reached the client as %s", rep.short(ids.A))
		if rep.id == ids.A && rep.complete {
			how := "a complete message"
			if rep.closeEnd {
				how = "a body ended by a clean close"
			}
			res.add(4, "the answer to %s was cut short upstream but looked whole to the client: %s", ids.A, how)
		}
	}

	res.outcome = outcome(p, ids, x, mainAtBackend)
}

// ownAnswer checks invariant 1 for one request.
func ownAnswer(res *result, what, want string, rep *reply, strict bool) {
	switch {
	case rep == nil || rep.status == 0:
		end := "nothing read"
		if rep != nil {
			end = rep.end
		}
		if strings.HasPrefix(end, "garbled") {
			res.add(1, "%s: the client read bytes that are no answer: %s", what, end)
		} else if strict {
			res.add(1, "%s: no answer (%s)", what, end)
		}
	case rep.id != "" && rep.id != want:
		res.add(1, "%s got the answer to %s", what, rep.id)
	case rep.id != "" && rep.bodyID != "" && rep.bodyID != rep.id:
		res.add(1, "%s: an answer whose head says %s and whose body says %s", what, rep.id, rep.bodyID)
	case rep.id == "" && rep.status < 400:
		res.add(1, "%s: a %d answer the backend did not give", what, rep.status)
	case strict && (rep.id != want || !rep.complete):
		res.add(1, "%s: expected its own complete answer, got %s", what, rep.short(want))
	}
}

func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

func orAnon(id string) string {
	if id == "" {
		return "(no id)"
	}
	return id
}

// outcome is the table's summary of what the case's client saw: each answer
// on its connection, the echo of an upgrade, how many of its requests the
// backend parsed, and follow-ups that did not get their own answer.
func outcome(p plan, ids caseIDs, x *exchange, atBackend int) string {
	all := append(append([]sent(nil), p.reqs...), p.maybe...)
	var parts []string
	for i, rep := range x.replies {
		parts = append(parts, rep.short(all[i].id))
	}
	if len(parts) == 0 {
		parts = []string{"no answer"}
	}
	s := strings.Join(parts, ",")
	if x.echo != "" {
		s += " echo " + x.echo
	}
	s += fmt.Sprintf(" bk%d", atBackend)
	own, total := 0, len(x.keep)+len(x.fresh)
	for i, rep := range x.keep {
		if rep.id == x.keepIDs[i] && rep.complete {
			own++
		}
	}
	for i, rep := range x.fresh {
		if rep.id == x.freshIDs[i] && rep.complete {
			own++
		}
	}
	if own != total {
		s += fmt.Sprintf(" fu%d/%d", own, total)
	}
	return s
}
