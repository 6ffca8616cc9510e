//go:build race

package faults

// raceOn says, in docs/faults.md, whether the binaries ran with the race
// detector (proctest.BuildGo builds them so when the tests run with it).
const raceOn = true
