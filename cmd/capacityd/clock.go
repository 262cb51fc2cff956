package main

import (
	"os"
	"strings"
	"sync"
	"time"
)

// clockFileEnv names a test-only knob: a file holding a Go duration (for
// example "90s" or "-1m30s") that the service adds to the wall clock for
// every decision it takes. The e2e fault suite uses it to give instances
// clocks that disagree and jump, as NTP steps and drifting hosts do;
// libfaketime does not reach a pure-Go binary. It has no flag and is not
// part of the documented configuration.
const clockFileEnv = "CAPACITY_CLOCK_FILE"

// clockReread is how long an offset read from the clock file is used
// before the file is read again.
const clockReread = 50 * time.Millisecond

// offsetClock is the wall clock plus an offset read from a file, re-read
// at most every clockReread. A missing or unparsable file means offset 0.
type offsetClock struct {
	path string

	mu     sync.Mutex
	offset time.Duration
	readAt time.Time // monotonic
}

// newClock returns the service's clock: time.Now, or with path set, the
// wall clock shifted by the offset in that file.
func newClock(path string) func() time.Time {
	if path == "" {
		return time.Now
	}
	c := &offsetClock{path: path}
	return c.Now
}

// Now is time.Now plus the file's current offset.
func (c *offsetClock) Now() time.Time {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readAt.IsZero() || now.Sub(c.readAt) >= clockReread {
		c.readAt = now
		c.offset = 0
		if data, err := os.ReadFile(c.path); err == nil {
			if d, err := time.ParseDuration(strings.TrimSpace(string(data))); err == nil {
				c.offset = d
			}
		}
	}
	// Round(0) drops the monotonic reading: the offset must show in
	// comparisons, not only in the wall time.
	return now.Add(c.offset).Round(0)
}
