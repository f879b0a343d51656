// Package backoff computes the exponential delays the worker and the resync use between attempts when
// Graph gave no Retry-After.
package backoff

import "time"

// Step is base doubled attempt times, at most max. Attempt 0 waits base.
func Step(base, max time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
