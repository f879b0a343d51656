//go:build race

package subscription

// raceEnabled: the race detector slows the at-scale simulation tenfold, so it runs on fewer mailboxes.
const raceEnabled = true
