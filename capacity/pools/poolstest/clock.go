package poolstest

import (
	"sync/atomic"
	"time"
)

// Clock is a fake clock that only moves when told; safe for concurrent use.
type Clock struct{ now atomic.Int64 }

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock {
	c := &Clock{}
	c.Set(start)
	return c
}

// Now returns the clock's time, in UTC.
func (c *Clock) Now() time.Time { return time.Unix(0, c.now.Load()).UTC() }

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) { c.now.Add(int64(d)) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.now.Store(t.UnixNano()) }
