package cli

import (
	"os"
	"testing"
)

// asZerodownEnv makes the test binary the zerodown command instead of
// running the tests, for tests that need zerodown as a process (the
// supervisor re-running itself and the agent) without building it.
const asZerodownEnv = "ZERODOWN_CLI_TEST_AS_ZERODOWN"

func TestMain(m *testing.M) {
	if os.Getenv(asZerodownEnv) != "" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
