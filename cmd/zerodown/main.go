// Command zerodown deploys new versions of services to fleets of servers
// behind a load balancer with zero failed requests.
package main

import (
	"os"

	"github.com/zerodown/zerodown/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
