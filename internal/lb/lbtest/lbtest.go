// Package lbtest helps the load balancer drivers' tests.
package lbtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
)

// Target returns the target at addr as b reports it now, failing t when b
// cannot tell or reports no such target.
func Target(t testing.TB, b lb.Balancer, addr string) lb.Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts, err := b.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range ts {
		if tg.Address == addr {
			return tg
		}
	}
	t.Fatalf("no target %s in %+v", addr, ts)
	return lb.Target{}
}

// NginxConf is an nginx.conf for a test: nginx keeps every file under dir
// (so it runs as any user), listens on listen and proxies to the upstream
// app that dir/upstream.conf defines; main goes into the main context,
// http into the http block.
func NginxConf(dir, listen, main, http string) string {
	return fmt.Sprintf(`worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
%[3]s
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    %[4]s
    include %[1]s/upstream.conf;
    server {
        listen %[2]s;
        location / { proxy_pass http://app; }
    }
}
`, dir, listen, main, http)
}
