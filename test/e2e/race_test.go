//go:build race

package e2e

// raceEnabled says the tests run with the race detector; the processes under test
// are then built with it too.
const raceEnabled = true
