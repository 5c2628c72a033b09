//go:build race

package presence_test

const raceEnabled = true
