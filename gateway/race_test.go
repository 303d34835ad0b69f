//go:build race

package gateway

// raceAllocs is what the race detector adds to an allocation count (its shadow state
// makes some values escape that otherwise stay on the stack).
const raceAllocs = 3
