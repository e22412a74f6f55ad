//go:build race

package main

// raceEnabled shortens the leak check under the race detector (make unit).
const raceEnabled = true
