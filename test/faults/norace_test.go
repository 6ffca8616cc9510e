//go:build !race

package faults

const raceOn = false
