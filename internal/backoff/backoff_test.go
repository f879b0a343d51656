package backoff

import (
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{{-1, 30 * time.Second}, {0, 30 * time.Second}, {1, time.Minute}, {3, 4 * time.Minute}, {7, time.Hour}, {1000, time.Hour}} {
		if got := Step(30*time.Second, time.Hour, tc.attempt); got != tc.want {
			t.Errorf("Step(attempt %d) = %s, want %s", tc.attempt, got, tc.want)
		}
	}
}
