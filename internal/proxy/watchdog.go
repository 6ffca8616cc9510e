package proxy

import (
	"time"
)

// watchdogPeriod bounds how late a response timeout or a client that went
// away is noticed.
const watchdogPeriod = 50 * time.Millisecond

// watchdog closes upstream connections whose client has gone away or whose
// response head is overdue. One goroutine scanning busy connections is far
// cheaper than a deadline and a context callback on every request.
func (s *Server) watchdog(stop <-chan struct{}) {
	tick := time.NewTicker(watchdogPeriod)
	defer tick.Stop()
	var expired []*upConn
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		for _, p := range s.poolList() {
			for _, t := range p.list() {
				expired = expired[:0]
				t.mu.Lock()
				for c := range t.conns {
					wb := c.watch.Load()
					if wb == nil {
						continue
					}
					late := false
					if dl := wb.deadline.Load(); dl != 0 && now > dl {
						late = true
					} else if wb.ctx.Err() == nil {
						continue
					}
					// Set before the swap: the request path reads it only
					// after the close below makes its I/O fail.
					wb.timedOut.Store(late)
					if c.watch.CompareAndSwap(wb, nil) {
						expired = append(expired, c)
					}
				}
				t.mu.Unlock()
				for _, c := range expired {
					c.conn.Close()
				}
			}
		}
	}
}
