package projection

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Option configures a Runner created by New.
type Option func(*options) error

// options holds a Runner's settings; defaults come from defaultOptions.
type options struct {
	maxAckPending     int
	ackWait           time.Duration
	batch             int
	inactiveThreshold time.Duration
	timeout           time.Duration
	logger            zerolog.Logger

	checkpoints        *Checkpoints
	state              State
	checkpointEvery    uint64
	checkpointInterval time.Duration
	checkpointTimeout  time.Duration
}

func defaultOptions() options {
	return options{
		maxAckPending:     20_000,
		ackWait:           30 * time.Second,
		batch:             1000,
		inactiveThreshold: time.Hour,
		timeout:           5 * time.Second,
		logger:            zerolog.Nop(),
		checkpointTimeout: 30 * time.Second,
	}
}

// WithCheckpoints makes the Runner save state as a checkpoint in cp every
// `every` events (a group commit counts its events, a poison message one)
// or `interval`, whichever comes first once something new
// has been applied, and when Run returns; and load it when it first runs,
// so that it resumes from the checkpoint's sequence + 1 instead of 1. The
// state must be what the Runner's handler feeds.
func WithCheckpoints(cp *Checkpoints, state State, every int, interval time.Duration) Option {
	return func(o *options) error {
		if cp == nil || state == nil || every < 1 || interval <= 0 {
			return fmt.Errorf("projection: checkpoints every %d events or %v, want a bucket, a state, >= 1 and > 0", every, interval)
		}
		o.checkpoints, o.state, o.checkpointEvery, o.checkpointInterval = cp, state, uint64(every), interval
		return nil
	}
}

// WithMaxAckPending bounds the messages delivered but not yet acknowledged
// (default 20000: catch-up pulls large batches and acks every half batch).
func WithMaxAckPending(n int) Option {
	return func(o *options) error {
		if n < 2 {
			return fmt.Errorf("projection: max ack pending %d, want >= 2", n)
		}
		o.maxAckPending = n
		return nil
	}
}

// WithAckWait sets how long the server waits for an ack before redelivering
// (default 30s). A handler retrying an event keeps it alive with InProgress.
func WithAckWait(d time.Duration) Option {
	return func(o *options) error {
		if d < 100*time.Millisecond {
			return fmt.Errorf("projection: ack wait %v, want >= 100ms", d)
		}
		o.ackWait = d
		return nil
	}
}

// WithBatch sets how many messages one pull asks for (default 1000, capped
// at half of MaxAckPending).
func WithBatch(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("projection: batch %d, want >= 1", n)
		}
		o.batch = n
		return nil
	}
}

// WithInactiveThreshold sets how long the server keeps the durable after
// its runner stopped pulling (default 1h), so consumers of instances that
// never come back are removed.
func WithInactiveThreshold(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("projection: inactive threshold %v, want > 0", d)
		}
		o.inactiveThreshold = d
		return nil
	}
}

// WithTimeout bounds each JetStream API request of the runner (default 5s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("projection: timeout %v, want > 0", d)
		}
		o.timeout = d
		return nil
	}
}

// WithLogger sets the logger for poison messages, retries and restarts
// (default: none).
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error {
		o.logger = l
		return nil
	}
}
