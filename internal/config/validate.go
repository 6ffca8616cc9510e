package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// applyDefaults fills every value the file left out. Zeros the file wrote
// out were refused by the check, so a zero here always means "not set".
func applyDefaults(cfg *LB) {
	orDefault(&cfg.Admin.Address, DefaultAdminAddress)
	orDefault(&cfg.ShutdownTimeout, Duration(DefaultShutdownTimeout))
	orDefault(&cfg.Client.ReadHeaderTimeout, Duration(DefaultReadHeaderTimeout))
	orDefault(&cfg.Client.IdleTimeout, Duration(DefaultClientIdleTimeout))
	orDefault(&cfg.Client.MaxBodyBytes, DefaultMaxBodyBytes)
	orDefault(&cfg.Client.MaxHeaderBytes, DefaultMaxHeaderBytes)
	orDefault(&cfg.Client.MaxHeaders, DefaultMaxHeaders)
	orDefault(&cfg.Client.MaxConns, DefaultMaxConns)
	for _, p := range cfg.Pools {
		orDefault(&p.Balance, DefaultBalance)
		for i := range p.Targets {
			ptrDefault(&p.Targets[i].Weight, DefaultWeight)
		}
		h := &p.Health
		orDefault(&h.Path, DefaultHealthPath)
		orDefault(&h.Interval, Duration(DefaultHealthInterval))
		orDefault(&h.Timeout, Duration(DefaultHealthTimeout))
		orDefault(&h.HealthyThreshold, DefaultHealthyThreshold)
		orDefault(&h.UnhealthyThreshold, DefaultUnhealthyThreshold)
		orDefault(&h.Status, DefaultHealthStatus)
		ptrDefault(&h.PassiveFailures, DefaultPassiveFailures)
		ptrDefault(&p.FailOpen, DefaultFailOpen)
		orDefault(&p.DeregistrationDelay, Duration(DefaultDeregistrationDelay))
		orDefault(&p.WebSocketGrace, Duration(DefaultWebSocketGrace))
		ptrDefault(&p.Retries, DefaultRetries)
		orDefault(&p.MaxReplayBytes, DefaultMaxReplayBytes)
		u := &p.Upstream
		orDefault(&u.ConnectTimeout, Duration(DefaultConnectTimeout))
		orDefault(&u.ResponseTimeout, Duration(DefaultResponseTimeout))
		orDefault(&u.IdleTimeout, Duration(DefaultUpstreamIdleTimeout))
		orDefault(&u.MaxIdlePerTarget, DefaultMaxIdlePerTarget)
	}
}

func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func ptrDefault[T any](p **T, def T) {
	if *p == nil {
		*p = &def
	}
}

// validator checks the decoded, defaulted config; c knows where each key is.
type validator struct {
	c    *checker
	cfg  *LB
	errs Errors
}

func (v *validator) errorf(path, format string, args ...any) {
	at := v.c.where(path)
	v.errs = append(v.errs, &Error{File: v.c.file, Line: at.Line, Column: at.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// written reports whether path is in the file (not a default).
func (v *validator) written(path string) bool {
	_, ok := v.c.at[path]
	return ok
}

func validate(cfg *LB, c *checker) Errors {
	v := &validator{c: c, cfg: cfg}
	v.listeners()
	v.admin()
	v.pools()
	return v.errs
}

func (v *validator) listeners() {
	c, cfg := v.c, v.cfg
	if len(cfg.Listeners) == 0 {
		v.errorf(c.key("", "listeners"), "at least one listener is required")
	}
	addrs := addrSet{}
	names := map[string]string{}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		lp := c.item("listeners", i)
		if l.Name != "" {
			if prev, dup := names[l.Name]; dup {
				v.errorf(c.key(lp, "name"), "name %q is already used by %s", l.Name, prev)
			}
			names[l.Name] = lp
		}
		ap := c.key(lp, "address")
		if l.Address == "" {
			v.errorf(ap, "required")
		} else if norm, err := listenAddr(l.Address); err != nil {
			v.errorf(ap, "%v", err)
		} else if prev := addrs.clash(norm); prev != "" {
			v.errorf(ap, "%s is already used by %s", l.Address, prev)
		} else {
			addrs.add(norm, lp)
		}
		v.tls(c.key(lp, "tls"), l.TLS)
		rsp := c.key(lp, "routes")
		if len(l.Routes) == 0 {
			v.errorf(rsp, "at least one route is required")
		}
		earlier := map[Route]int{} // host and prefix of the routes so far → first index
		for j, r := range l.Routes {
			rp := c.item(rsp, j)
			switch {
			case r.Pool == "":
				v.errorf(c.key(rp, "pool"), "required")
			case cfg.Pools[r.Pool] == nil:
				v.errorf(c.key(rp, "pool"), "unknown pool %q (pools: %s)", r.Pool, listSome(cfg.PoolOrder))
			}
			if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
				v.errorf(c.key(rp, "path_prefix"), "must start with /")
			}
			match := Route{Host: r.Host, PathPrefix: r.PathPrefix}
			if k, ok := shadowedBy(earlier, match); ok {
				v.errorf(rp, "never matches: %s comes first and matches every request this one does", c.item(rsp, k))
			}
			if _, ok := earlier[match]; !ok {
				earlier[match] = j
			}
		}
	}
	v.adminClash(addrs)
}

// listSome joins the first few names, enough to spot a typo.
func listSome(names []string) string {
	const most = 10
	if len(names) > most {
		return strings.Join(names[:most], ", ") + fmt.Sprintf(" and %d more", len(names)-most)
	}
	return strings.Join(names, ", ")
}

// shadowedBy returns the index of an earlier route that takes every request
// route b would match. It looks the candidates up rather than comparing
// with every earlier route, which would be quadratic in routes an alias can
// multiply. Only certain cases count, whatever the proxy's exact matching:
// an equal or empty host, and an equal, empty or "/"-terminated prefix.
func shadowedBy(earlier map[Route]int, b Route) (int, bool) {
	prefixes := []string{"", b.PathPrefix}
	for i := 0; i < len(b.PathPrefix); i++ {
		if b.PathPrefix[i] == '/' {
			prefixes = append(prefixes, b.PathPrefix[:i+1])
		}
	}
	first, found := 0, false
	for _, host := range []string{"", b.Host} {
		for _, prefix := range prefixes {
			if k, ok := earlier[Route{Host: host, PathPrefix: prefix}]; ok && (!found || k < first) {
				first, found = k, true
			}
		}
	}
	return first, found
}

func (v *validator) admin() {
	c, a := v.c, &v.cfg.Admin
	ap := c.key("admin", "address")
	if norm, err := listenAddr(a.Address); err != nil {
		v.errorf(ap, "%v", err)
	} else if !loopbackHost(norm) && a.TLS == nil && !a.AllowPlaintext {
		// The token would cross the network in the clear.
		v.errorf(ap, "%s is reachable beyond this machine: set tls (cert and key), or allow_plaintext: true if the network is private", a.Address)
	}
	v.tls(c.key("admin", "tls"), a.TLS)
	if a.Token != "" && a.TokenFile != "" {
		v.errorf(c.key("admin", "token_file"), "token and token_file are both set; use one")
	}
}

// tls checks a tls block at path: both files are required once it is set.
func (v *validator) tls(path string, t *TLS) {
	if t == nil {
		return
	}
	if t.Cert == "" {
		v.errorf(v.c.key(path, "cert"), "required when tls is set")
	}
	if t.Key == "" {
		v.errorf(v.c.key(path, "key"), "required when tls is set")
	}
}

// adminClash reports an admin address that a listener already uses.
func (v *validator) adminClash(addrs addrSet) {
	norm, err := listenAddr(v.cfg.Admin.Address)
	if err != nil {
		return // reported by admin
	}
	if prev := addrs.clash(norm); prev != "" {
		v.errorf(v.c.key("admin", "address"), "%s is already used by %s", v.cfg.Admin.Address, prev)
	}
}

func (v *validator) pools() {
	c, cfg := v.c, v.cfg
	if len(cfg.Pools) == 0 {
		v.errorf(c.key("", "pools"), "at least one pool is required")
	}
	for _, name := range cfg.PoolOrder {
		p := cfg.Pools[name]
		pp := c.key("pools", name)
		if err := checkPoolName(name); err != nil {
			v.errorf(pp, "%v", err)
		}
		if p.Balance != BalanceLeastOutstanding && p.Balance != BalanceRoundRobin {
			v.errorf(c.key(pp, "balance"), "unknown balance %q (want %s or %s)", p.Balance, BalanceLeastOutstanding, BalanceRoundRobin)
		}
		v.targets(pp, p)
		v.health(c.key(pp, "health"), &p.Health)
		if r := *p.Retries; r < 0 || r > MaxRetries {
			v.errorf(c.key(pp, "retries"), "must be between 0 and %d, got %d", MaxRetries, r)
		}
	}
}

func (v *validator) targets(pp string, p *Pool) {
	c := v.c
	tsp := c.key(pp, "targets")
	seen := map[string]string{} // normalized address → path
	for i, t := range p.Targets {
		tp := c.item(tsp, i)
		ap := tp
		if v.written(c.key(tp, "address")) {
			ap = c.key(tp, "address")
		}
		if t.Address == "" {
			v.errorf(ap, "address is required")
		} else if norm, err := targetAddr(t.Address); err != nil {
			v.errorf(ap, "%v", err)
		} else if prev, dup := seen[norm]; dup {
			v.errorf(ap, "duplicate target %s (also %s)", t.Address, prev)
		} else {
			seen[norm] = tp
			// One spelling per target, so the admin API, the state file and
			// the config agree on which target is which.
			p.Targets[i].Address = norm
		}
		if w := *t.Weight; w < 0 || w > MaxWeight {
			v.errorf(c.key(tp, "weight"), "must be between 0 and %d, got %d", MaxWeight, w)
		}
	}
}

func (v *validator) health(hp string, h *HealthCheck) {
	c := v.c
	if !strings.HasPrefix(h.Path, "/") {
		v.errorf(c.key(hp, "path"), "must start with /")
	}
	// The check refused zero and negative values; these hold for defaults too,
	// and are kept so a changed default cannot break the proxy's tickers.
	if h.Interval <= 0 {
		v.errorf(c.key(hp, "interval"), "must be greater than 0")
	}
	if h.Timeout <= 0 {
		v.errorf(c.key(hp, "timeout"), "must be greater than 0")
	} else if h.Timeout >= h.Interval {
		tp := c.key(hp, "timeout")
		if v.written(tp) {
			v.errorf(tp, "%s must be less than interval %s", h.Timeout, h.Interval)
		} else {
			v.errorf(tp, "the default %s must be less than interval %s; set a shorter timeout", h.Timeout, h.Interval)
		}
	}
	if h.HealthyThreshold < 1 {
		v.errorf(c.key(hp, "healthy_threshold"), "must be at least 1")
	}
	if h.UnhealthyThreshold < 1 {
		v.errorf(c.key(hp, "unhealthy_threshold"), "must be at least 1")
	}
	if *h.PassiveFailures < 0 {
		v.errorf(c.key(hp, "passive_failures"), "must not be negative, got %d", *h.PassiveFailures)
	}
	lo, hi, err := parseStatus(h.Status)
	if err != nil {
		v.errorf(c.key(hp, "status"), "%v", err)
		return
	}
	h.StatusMin, h.StatusMax = lo, hi
}

// parseStatus parses "200" or "200-399".
func parseStatus(s string) (lo, hi int, err error) {
	first, last, isRange := strings.Cut(s, "-")
	lo, ok1 := statusCode(first)
	hi, ok2 := lo, true
	if isRange {
		hi, ok2 = statusCode(last)
	}
	switch {
	case !ok1 || !ok2:
		return 0, 0, fmt.Errorf("invalid status %q: want a code such as 200 or a range such as 200-399", s)
	case lo < 100 || lo > 599 || hi < 100 || hi > 599:
		return 0, 0, fmt.Errorf("invalid status %q: codes must be between 100 and 599", s)
	case lo > hi:
		return 0, 0, fmt.Errorf("invalid status %q: the range is reversed", s)
	}
	return lo, hi, nil
}

// statusCode parses digits, without the signs and spaces Atoi allows.
func statusCode(s string) (int, bool) {
	if s == "" || len(s) > 4 {
		return 0, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func checkPoolName(name string) error {
	ok := name != ""
	for i, r := range name {
		alnum := '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
		if !alnum && (i == 0 || r != '.' && r != '_' && r != '-') {
			ok = false
		}
	}
	if !ok {
		// Names appear in admin API URLs and metric labels.
		return fmt.Errorf("invalid pool name: use letters, digits, '.', '_' and '-', starting with a letter or digit")
	}
	return nil
}

// addrSet holds the listen addresses in use: by port, the path of the
// first listener on it and of the listener on each host.
type addrSet map[string]*portUse

type portUse struct {
	first string
	hosts map[string]string
}

// clash returns the path of a listener that binds the same port as norm on
// an overlapping host (equal, or either one all interfaces).
func (s addrSet) clash(norm string) string {
	host, port, _ := net.SplitHostPort(norm)
	use := s[port]
	if use == nil {
		return ""
	}
	if allInterfaces(host) {
		return use.first
	}
	for _, h := range []string{host, "", "0.0.0.0", "::"} {
		if p, ok := use.hosts[h]; ok {
			return p
		}
	}
	return ""
}

func (s addrSet) add(norm, path string) {
	host, port, _ := net.SplitHostPort(norm)
	if s[port] == nil {
		s[port] = &portUse{first: path, hosts: map[string]string{}}
	}
	s[port].hosts[host] = path
}

func allInterfaces(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// listenAddr checks an address to listen on and returns it normalized.
// The host must be an IP address, localhost, or empty for all interfaces.
func listenAddr(s string) (string, error) {
	host, port, err := splitAddr(s)
	if err != nil {
		return "", err
	}
	if host != "" && host != "localhost" {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", fmt.Errorf("invalid address %q: the host must be an IP address, localhost, or empty for all interfaces", s)
		}
		host = ip.String()
	}
	return net.JoinHostPort(host, port), nil
}

// NormalizeTarget checks a target address (an IP address or host name with
// a port) and returns its one canonical spelling: 127.0.0.1:08101 and
// 127.0.0.1:8101 are the same target.
func NormalizeTarget(s string) (string, error) { return targetAddr(s) }

// targetAddr checks a target address, an IP address or host name with a
// port, and returns it normalized for finding duplicates.
func targetAddr(s string) (string, error) {
	host, port, err := splitAddr(s)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", fmt.Errorf("invalid address %q: missing host", s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("invalid address %q: an IPv6 zone cannot be used in a target", s)
		}
		return net.JoinHostPort(ip.String(), port), nil
	}
	if err := checkHostname(host); err != nil {
		return "", fmt.Errorf("invalid address %q: %v", s, err)
	}
	return net.JoinHostPort(strings.ToLower(host), port), nil
}

// splitAddr splits host:port and checks the port, with messages for the
// usual mistakes.
func splitAddr(s string) (host, port string, err error) {
	if strings.Contains(s, "://") {
		return "", "", fmt.Errorf("invalid address %q: want host:port, not a URL", s)
	}
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		switch {
		case errors.As(err, &ae) && ae.Err == "missing port in address":
			return "", "", fmt.Errorf("invalid address %q: missing port", s)
		case errors.As(err, &ae) && ae.Err == "too many colons in address":
			return "", "", fmt.Errorf("invalid address %q: an IPv6 address needs brackets, as in [::1]:8080", s)
		}
		return "", "", fmt.Errorf("invalid address %q: want host:port", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", "", fmt.Errorf("invalid address %q: the port must be a number from 1 to 65535", s)
	}
	return host, strconv.FormatUint(n, 10), nil
}

// checkHostname accepts DNS names (RFC 1123). A name whose last label is all
// digits is refused: it is a mistyped IP address such as 10.0.0.256.
func checkHostname(h string) error {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return fmt.Errorf("the host is neither an IP address nor a host name")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("the host is neither an IP address nor a host name")
		}
		for _, r := range l {
			if !(r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
				return fmt.Errorf("the host is neither an IP address nor a host name")
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("the host is not a valid IP address")
	}
	return nil
}
