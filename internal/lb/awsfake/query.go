package awsfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// maxMembers bounds a list parameter's index, as AWS's own validation
// does: a request naming member.1000000 is refused, not allocated.
const maxMembers = 1000

// request is one decoded awsQuery call: the form fields of its body.
type request struct {
	Action  string
	Version string
	form    url.Values
}

// decodeRequest parses an awsQuery body (application/x-www-form-urlencoded).
func decodeRequest(body []byte) (*request, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("the body is not form-encoded: %w", err)
	}
	r := &request{Action: form.Get("Action"), Version: form.Get("Version"), form: form}
	if r.Action == "" {
		return nil, fmt.Errorf("the request names no Action")
	}
	return r, nil
}

func (r *request) get(key string) string { return r.form.Get(key) }

// list returns the values of prefix.member.N (field "") or
// prefix.member.N.field, in N's order. Indices must be 1..maxMembers and
// may have gaps (AWS sorts them the same way).
func (r *request) list(prefix, field string) ([]string, error) {
	lead := prefix + ".member."
	type item struct {
		n int
		v string
	}
	var items []item
	for key, vals := range r.form {
		rest, ok := strings.CutPrefix(key, lead)
		if !ok {
			continue
		}
		idx := rest
		if field != "" {
			var f string
			idx, f, ok = strings.Cut(rest, ".")
			if !ok || f != field {
				continue
			}
		} else if strings.Contains(rest, ".") {
			continue
		}
		n, err := strconv.Atoi(idx)
		if err != nil || n < 1 || n > maxMembers || strconv.Itoa(n) != idx {
			return nil, fmt.Errorf("%s: %q is not a member index from 1 to %d", key, idx, maxMembers)
		}
		items = append(items, item{n, vals[0]})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].n < items[j].n })
	out := make([]string, 0, len(items))
	for i, it := range items {
		if i > 0 && items[i-1].n == it.n {
			return nil, fmt.Errorf("%s member %d is given twice", prefix, it.n)
		}
		out = append(out, it.v)
	}
	return out, nil
}

// members returns prefix.member.N.field for each of fields, one map per
// N that has any of them, in N's order.
func (r *request) members(prefix string, fields ...string) ([]map[string]string, error) {
	lead := prefix + ".member."
	byN := map[int]map[string]string{}
	for key, vals := range r.form {
		rest, ok := strings.CutPrefix(key, lead)
		if !ok {
			continue
		}
		idx, f, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		known := false
		for _, want := range fields {
			known = known || f == want
		}
		if !known {
			continue
		}
		n, err := strconv.Atoi(idx)
		if err != nil || n < 1 || n > maxMembers || strconv.Itoa(n) != idx {
			return nil, fmt.Errorf("%s: %q is not a member index from 1 to %d", key, idx, maxMembers)
		}
		if byN[n] == nil {
			byN[n] = map[string]string{}
		}
		byN[n][f] = vals[0]
	}
	ns := make([]int, 0, len(byN))
	for n := range byN {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	out := make([]map[string]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, byN[n])
	}
	return out, nil
}

// xw writes an XML answer element by element.
type xw struct{ b strings.Builder }

func (w *xw) open(tag string)  { w.b.WriteString("<" + tag + ">") }
func (w *xw) close(tag string) { w.b.WriteString("</" + tag + ">") }

func (w *xw) elem(tag, val string) {
	w.open(tag)
	_ = xml.EscapeText(&w.b, []byte(val))
	w.close(tag)
}

func (w *xw) num(tag string, n int) { w.elem(tag, strconv.Itoa(n)) }

func (w *xw) bool(tag string, b bool) { w.elem(tag, strconv.FormatBool(b)) }

// requestID is a fresh id in AWS's format.
func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
