package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestTuneGCSetsASoftMemoryLimit(t *testing.T) {
	oldLimit, oldGC := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(oldLimit); debug.SetGCPercent(oldGC) })

	debug.SetMemoryLimit(math.MaxInt64)
	tuneGC(func(string) string { return "" })
	if got := debug.SetMemoryLimit(-1); got != memoryLimit {
		t.Errorf("memory limit %d, want %d", got, memoryLimit)
	}
	if got := debug.SetGCPercent(400); got != 400 {
		t.Errorf("GOGC %d, want 400", got)
	}

	// The operator's GOMEMLIMIT and GOGC (which the runtime has read already) stay.
	debug.SetMemoryLimit(math.MaxInt64)
	debug.SetGCPercent(100)
	tuneGC(func(k string) string { return map[string]string{"GOMEMLIMIT": "1GiB", "GOGC": "100"}[k] })
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit changed to %d despite GOMEMLIMIT", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC changed to %d despite GOGC", got)
	}
}
