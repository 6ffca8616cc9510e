//go:build !race

package proctest

// RaceEnabled reports whether the tests, and so the programs BuildGo
// builds, run with the race detector.
const RaceEnabled = false
