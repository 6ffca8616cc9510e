//go:build !unix

package proxy

// openFilesLimit is unknown here; the configured cap stands.
func openFilesLimit() (uint64, bool) { return 0, false }
