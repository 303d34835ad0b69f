//go:build !race

package gateway

// raceAllocs is what the race detector adds to an allocation count: nothing without it.
const raceAllocs = 0
