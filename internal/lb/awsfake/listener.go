package awsfake

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Listener configures an ELBv2 listener whose default action forwards to
// one target group (the live or preview route of a blue-green
// environment) or, after a ModifyListener with a ForwardConfig of several,
// to weighted target groups (a canary): each request goes to one group, in
// proportion to the weights. A request already
// forwarded finishes on the group it went to.
type Listener struct {
	// ARN defaults to arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener/app/NAME/ID/ID.
	ARN string
	// Listen is the listener's address; default 127.0.0.1:0.
	Listen string
	// TargetGroupARN is the group the default action forwards to.
	TargetGroupARN string
}

type listener struct {
	arn, lbARN string
	port       int
	forward    []weighted // one group, or several by weight
	current    []int      // the round robin's state, per forward group
	ln         net.Listener
	srv        *http.Server
}

// weighted is a target group of a forward action and its weight.
type weighted struct {
	arn    string
	weight int
}

// maxForwardGroups and maxGroupWeight are AWS's limits on a forward
// action: five target groups, each weighing 0 to 999.
const (
	maxForwardGroups = 5
	maxGroupWeight   = 999
)

// pick is the group a request goes to, in proportion to the weights by a
// smooth weighted round robin (AWS does not say how it picks; an even
// spread keeps a test's shares exact); "" when every weight is 0. Called
// with the Fake's lock held.
func (l *listener) pick() string {
	if len(l.forward) == 1 {
		return l.forward[0].arn
	}
	if len(l.current) != len(l.forward) {
		l.current = make([]int, len(l.forward))
	}
	total, best := 0, -1
	for i, w := range l.forward {
		total += w.weight
		l.current[i] += w.weight
		if w.weight > 0 && (best < 0 || l.current[i] > l.current[best]) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	l.current[best] -= total
	return l.forward[best].arn
}

// ListenerProxy is the data plane of one listener.
type ListenerProxy struct {
	l *listener
	f *Fake
}

// URL is http://ADDR of the listener.
func (p *ListenerProxy) URL() string { return "http://" + p.l.ln.Addr().String() }

// ARN is the listener's ARN.
func (p *ListenerProxy) ARN() string { return p.l.arn }

// Forward is the target group the listener forwards to now; under
// weights, the heaviest (the first of equals).
func (p *ListenerProxy) Forward() string {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	best := p.l.forward[0]
	for _, w := range p.l.forward[1:] {
		if w.weight > best.weight {
			best = w
		}
	}
	return best.arn
}

// Weights are the weights of the groups the listener forwards to, by ARN.
func (p *ListenerProxy) Weights() map[string]int {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	out := map[string]int{}
	for _, w := range p.l.forward {
		out[w.arn] = w.weight
	}
	return out
}

// AddListener creates a listener forwarding to an existing target group.
func (f *Fake) AddListener(c Listener) (*ListenerProxy, error) {
	if _, aerr := f.group(c.TargetGroupARN); aerr != nil {
		return nil, fmt.Errorf("awsfake: listener: %v", aerr)
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("awsfake: listener: %w", err)
	}
	if c.ARN == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.ARN = "arn:aws:elasticloadbalancing:" + f.opts.Region + ":" + f.opts.Account + ":listener/app/web/50dc6c495c0c9188/" + hex.EncodeToString(b[:])
	}
	l := &listener{arn: c.ARN, lbARN: "arn:aws:elasticloadbalancing:" + f.opts.Region + ":" + f.opts.Account + ":loadbalancer/app/web/50dc6c495c0c9188",
		port: ln.Addr().(*net.TCPAddr).Port, forward: []weighted{{arn: c.TargetGroupARN, weight: 1}}, ln: ln}
	l.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		g := f.groups[l.pick()]
		f.mu.Unlock()
		if g == nil {
			http.Error(w, "every target group of the forward action weighs 0", http.StatusServiceUnavailable)
			return
		}
		g.pool.serve(w, r)
	})}
	f.mu.Lock()
	if f.listeners == nil {
		f.listeners = map[string]*listener{}
	}
	if _, dup := f.listeners[c.ARN]; dup {
		f.mu.Unlock()
		ln.Close()
		return nil, fmt.Errorf("awsfake: listener %s exists", c.ARN)
	}
	f.listeners[c.ARN] = l
	f.mu.Unlock()
	go func() { _ = l.srv.Serve(ln) }()
	return &ListenerProxy{l: l, f: f}, nil
}

// describeListeners answers DescribeListeners for ListenerArns.
func (f *Fake) describeListeners(req *request, out *xw) *apiError {
	arns, err := req.list("ListenerArns", "")
	if err != nil {
		return validation("%v", err)
	}
	if len(arns) == 0 {
		return validation("ListenerArns is required by this simulation (it does not list by LoadBalancerArn)")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out.open("Listeners")
	for _, a := range arns {
		l, ok := f.listeners[a]
		if !ok {
			return errorf(http.StatusBadRequest, "ListenerNotFound", "One or more listeners not found")
		}
		writeListener(out, l)
	}
	out.close("Listeners")
	return nil
}

func writeListener(out *xw, l *listener) {
	out.open("member")
	out.elem("ListenerArn", l.arn)
	out.elem("LoadBalancerArn", l.lbARN)
	out.num("Port", l.port)
	out.elem("Protocol", "HTTP")
	out.open("DefaultActions")
	out.open("member")
	out.elem("Type", "forward")
	if len(l.forward) == 1 {
		// AWS fills in TargetGroupArn only for a forward to one group.
		out.elem("TargetGroupArn", l.forward[0].arn)
	}
	out.num("Order", 1)
	out.open("ForwardConfig")
	out.open("TargetGroups")
	for _, w := range l.forward {
		out.open("member")
		out.elem("TargetGroupArn", w.arn)
		out.num("Weight", w.weight)
		out.close("member")
	}
	out.close("TargetGroups")
	out.close("ForwardConfig")
	out.close("member")
	out.close("DefaultActions")
	out.close("member")
}

// modifyListener answers ModifyListener: a single forward default action,
// to one target group (its TargetGroupArn) or to up to five by weight (its
// ForwardConfig); when both are given they must name the same one group.
func (f *Fake) modifyListener(req *request, out *xw) *apiError {
	arn := req.get("ListenerArn")
	if arn == "" {
		return validation("ListenerArn is required")
	}
	actions, err := req.members("DefaultActions", "Type", "TargetGroupArn", "Order")
	if err != nil {
		return validation("%v", err)
	}
	if len(actions) != 1 || actions[0]["Type"] != "forward" {
		return validation("this simulation takes one forward default action, got %d action(s)", len(actions))
	}
	groups, err := req.members("DefaultActions.member.1.ForwardConfig.TargetGroups", "TargetGroupArn", "Weight")
	if err != nil {
		return validation("%v", err)
	}
	var forward []weighted
	for i, g := range groups {
		w := 1
		if s, ok := g["Weight"]; ok {
			if w, err = strconv.Atoi(s); err != nil || w < 0 || w > maxGroupWeight {
				return validation("ForwardConfig.TargetGroups.member.%d.Weight: %q is not a weight from 0 to %d", i+1, s, maxGroupWeight)
			}
		}
		forward = append(forward, weighted{arn: g["TargetGroupArn"], weight: w})
	}
	switch tg := actions[0]["TargetGroupArn"]; {
	case len(forward) == 0 && tg == "":
		return validation("a forward action needs TargetGroupArn or ForwardConfig")
	case len(forward) == 0:
		forward = []weighted{{arn: tg, weight: 1}}
	case tg != "" && (len(forward) != 1 || forward[0].arn != tg):
		return validation("TargetGroupArn and ForwardConfig name different target groups")
	case len(forward) > maxForwardGroups:
		return validation("a forward action takes at most %d target groups, got %d", maxForwardGroups, len(forward))
	}
	seen := map[string]bool{}
	for _, w := range forward {
		if seen[w.arn] {
			return validation("target group %s is given twice", w.arn)
		}
		seen[w.arn] = true
		if _, aerr := f.group(w.arn); aerr != nil {
			return aerr
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.listeners[arn]
	if !ok {
		return errorf(http.StatusBadRequest, "ListenerNotFound", "One or more listeners not found")
	}
	l.forward, l.current = forward, nil
	out.open("Listeners")
	writeListener(out, l)
	out.close("Listeners")
	return nil
}
