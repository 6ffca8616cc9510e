// Command hello is the sample HTTP service that zerodown's tests, benchmarks
// and demo deploy. It is a thin main over internal/sampleapp, which documents
// its routes and flags; the zerodown binary serves the same app as the hidden
// `zerodown sample-app`.
package main

import (
	"os"

	"github.com/zerodown/zerodown/internal/sampleapp"
)

func main() {
	os.Exit(sampleapp.Main("hello", os.Args[1:], os.Getenv, os.Stderr))
}
