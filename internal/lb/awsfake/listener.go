package awsfake

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Listener configures an ELBv2 listener whose default action forwards to
// one target group: the live (or preview) route of a blue-green
// environment. ModifyListener points it at another group; a request
// already forwarded finishes on the group it went to.
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
	forward    string // the target group's ARN
	ln         net.Listener
	srv        *http.Server
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

// Forward is the target group the listener forwards to now.
func (p *ListenerProxy) Forward() string {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	return p.l.forward
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
		port: ln.Addr().(*net.TCPAddr).Port, forward: c.TargetGroupARN, ln: ln}
	l.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		g := f.groups[l.forward]
		f.mu.Unlock()
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
	out.elem("TargetGroupArn", l.forward)
	out.num("Order", 1)
	out.open("ForwardConfig")
	out.open("TargetGroups")
	out.open("member")
	out.elem("TargetGroupArn", l.forward)
	out.num("Weight", 1)
	out.close("member")
	out.close("TargetGroups")
	out.close("ForwardConfig")
	out.close("member")
	out.close("DefaultActions")
	out.close("member")
}

// modifyListener answers ModifyListener: a single forward default action,
// to one target group (its TargetGroupArn, or a ForwardConfig of one group).
func (f *Fake) modifyListener(req *request, out *xw) *apiError {
	arn := req.get("ListenerArn")
	if arn == "" {
		return validation("ListenerArn is required")
	}
	actions, err := req.members("DefaultActions", "Type", "TargetGroupArn", "Order", "ForwardConfig.TargetGroups.member.1.TargetGroupArn", "ForwardConfig.TargetGroups.member.1.Weight")
	if err != nil {
		return validation("%v", err)
	}
	if len(actions) != 1 || actions[0]["Type"] != "forward" {
		return validation("this simulation takes one forward default action, got %d action(s)", len(actions))
	}
	tg := actions[0]["TargetGroupArn"]
	if tg == "" {
		tg = actions[0]["ForwardConfig.TargetGroups.member.1.TargetGroupArn"]
	}
	if _, aerr := f.group(tg); aerr != nil {
		return aerr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.listeners[arn]
	if !ok {
		return errorf(http.StatusBadRequest, "ListenerNotFound", "One or more listeners not found")
	}
	l.forward = tg
	out.open("Listeners")
	writeListener(out, l)
	out.close("Listeners")
	return nil
}
