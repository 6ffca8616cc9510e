//go:build !windows

package loadgen

func isRefusedOS(error) bool { return false }

func isResetOS(error) bool { return false }
