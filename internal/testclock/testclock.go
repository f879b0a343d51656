// Package testclock gives tests their fixed dates. A test pins its clock to a date, so that it passes on
// any day; it takes that date from Date, which moves it by GRAPH_WEBHOOKS_TEST_CLOCK_SHIFT (a Go duration,
// none by default). `make test` runs the unit suites a second time with the clock ten years ahead: a test
// that mixes its fixed clock with the wall clock (a message dated time.Now() judged by a worker whose clock
// is the fixed date) then fails at once, instead of on the day the calendar passes the date it pinned.
//
// Only tests use it. Product code takes the clock it is given and needs nothing from here.
package testclock

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// ShiftVariable names the environment variable holding the shift.
const ShiftVariable = "GRAPH_WEBHOOKS_TEST_CLOCK_SHIFT"

var shift = sync.OnceValue(func() time.Duration {
	v := os.Getenv(ShiftVariable)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%q is not a Go duration (e.g. 87600h): %v", ShiftVariable, v, err))
	}
	return d
})

// Date is time.Date in UTC, moved by the shift.
func Date(year int, month time.Month, day, hour, min, sec int) time.Time {
	return time.Date(year, month, day, hour, min, sec, 0, time.UTC).Add(shift())
}

// Shift is the shift in force (0 on an ordinary run).
func Shift() time.Duration { return shift() }
