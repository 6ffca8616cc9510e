package sampleapp

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

func (a *app) stream(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	n, every := 5, 100*time.Millisecond
	if s := v.Get("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 0 || n > maxStreamLines {
			http.Error(w, fmt.Sprintf("bad n %q: want 0 to %d", s, maxStreamLines), http.StatusBadRequest)
			return
		}
	}
	if s := v.Get("every"); s != "" {
		var err error
		if every, err = time.ParseDuration(s); err != nil || every < 0 || every > maxSleep {
			http.Error(w, fmt.Sprintf("bad every %q: want a duration from 0 to %s", s, maxSleep), http.StatusBadRequest)
			return
		}
	}
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	rc := http.NewResponseController(w)
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for i := 1; i <= n; i++ {
		if i > 1 && tick != nil {
			select {
			case <-tick:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "line %d of %d from %s version %s\n", i, n, a.cfg.Name, a.cfg.Version); err != nil {
			return
		}
		// Flushing each line is the point: the client (or a proxy under
		// test) must see it before the next one is produced.
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
