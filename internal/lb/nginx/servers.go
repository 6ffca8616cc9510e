package nginx

import (
	"net"
	"strconv"
	"strings"
)

// The only edits zerodown makes to the upstream block: a server's `down`
// and weight= parameters, and a server line for a host that has none.

// server returns the server directive of the upstream with address addr,
// or nil. An address without a port is nginx's port 80.
func (c *conf) server(addr string) *directive {
	for _, d := range c.up.Block {
		if d.Name == "server" && len(d.Args) > 0 && sameAddr(d.Args[0], addr) {
			return d
		}
	}
	return nil
}

func sameAddr(arg, addr string) bool {
	if arg == addr {
		return true
	}
	if _, _, err := net.SplitHostPort(arg); err != nil {
		return net.JoinHostPort(strings.Trim(arg, "[]"), "80") == addr
	}
	return false
}

// addServer appends `server addr;` after the block's last server, so the
// servers stay together above directives such as keepalive.
func (c *conf) addServer(addr string) *directive {
	d := &directive{Name: "server", Args: []string{addr}}
	at := len(c.up.Block)
	for i, x := range c.up.Block {
		if x.Name == "server" {
			at = i + 1
		}
	}
	c.up.Block = append(c.up.Block[:at], append([]*directive{d}, c.up.Block[at:]...)...)
	return d
}

// isDown reports whether the server has the `down` parameter.
func isDown(d *directive) bool {
	for _, a := range d.Args[1:] {
		if a == "down" {
			return true
		}
	}
	return false
}

// setDown adds or removes `down` and reports whether that changed d.
func setDown(d *directive, down bool) bool {
	if isDown(d) == down {
		return false
	}
	if down {
		d.Args = append(d.Args, "down")
		return true
	}
	args := d.Args[:1]
	for _, a := range d.Args[1:] {
		if a != "down" {
			args = append(args, a)
		}
	}
	d.Args = args
	return true
}

// weightOf is the server's weight= (nginx's default 1).
func weightOf(d *directive) int {
	for _, a := range d.Args[1:] {
		if v, ok := strings.CutPrefix(a, "weight="); ok {
			if w, err := strconv.Atoi(v); err == nil {
				return w
			}
		}
	}
	return 1
}

// setWeight sets weight=w, in place of the old one or right after the
// address, and reports whether that changed d.
func setWeight(d *directive, w int) bool {
	if weightOf(d) == w {
		return false
	}
	arg := "weight=" + strconv.Itoa(w)
	for i, a := range d.Args[1:] {
		if strings.HasPrefix(a, "weight=") {
			if a == arg {
				return false
			}
			d.Args[i+1] = arg
			return true
		}
	}
	d.Args = append(d.Args[:1], append([]string{arg}, d.Args[1:]...)...)
	return true
}
