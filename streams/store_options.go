package streams

import (
	"context"
	"fmt"
	"time"
)

// Option configures a Store created by New.
type Option func(*options) error

// options holds the settings New applies; defaults come from defaultOptions.
type options struct {
	replicas        int
	duplicateWindow time.Duration
	timeout         time.Duration
	attempt         time.Duration
	maxInflight     int
	following       bool
	sync            func(ctx context.Context, stream string) error
}

func defaultOptions() options {
	return options{
		replicas:        1,
		duplicateWindow: 2 * time.Minute,
		timeout:         5 * time.Second,
		attempt:         time.Second,
		maxInflight:     32,
	}
}

// WithReplicas sets the number of stream replicas (1, 3 or 5; default 1).
func WithReplicas(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 5 {
			return fmt.Errorf("%w: replicas %d, want 1..5", ErrInvalid, n)
		}
		o.replicas = n
		return nil
	}
}

// WithDuplicateWindow sets the stream's Nats-Msg-Id deduplication window (default 2 minutes).
func WithDuplicateWindow(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: duplicate window %v, want > 0", ErrInvalid, d)
		}
		o.duplicateWindow = d
		return nil
	}
}

// WithTimeout bounds each publish and each lookup when the caller's context has no earlier deadline (default 5s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: timeout %v, want > 0", ErrInvalid, d)
		}
		o.timeout = d
		return nil
	}
}

// WithMaxInflightBatches caps how many multi-event Appends of this Store may have an atomic batch open on the
// server at once (default 32; the server rejects more than 50 open batches per stream).
func WithMaxInflightBatches(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 50 {
			return fmt.Errorf("%w: max inflight batches %d, want 1..50", ErrInvalid, n)
		}
		o.maxInflight = n
		return nil
	}
}

// WithAttemptTimeout sets how long a single-message append waits for an answer before sending the same
// message again (same Nats-Msg-Id and expected sequence), until the append's own deadline (default 1s). A
// stream leader that died with the message is replaced within seconds; the resend reaches the new one at
// once instead of the append waiting out its whole timeout.
func WithAttemptTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: attempt timeout %v, want > 0", ErrInvalid, d)
		}
		o.attempt = d
		return nil
	}
}

// Following lets New open a copy that is a mirror (a region that follows
// the head elsewhere): the Store reads it; an append finds no stream
// listening on the region's subjects and fails definitely, until the copy
// is promoted and a Store opened over it again (Store.Following tells).
func Following() Option {
	return func(o *options) error {
		o.following = true
		return nil
	}
}

// WithSync makes every append wait, after the server's ack and before it returns, for sync(ctx, stream) to
// report that what the server acknowledged so far is on disk (see package groupsync: one fsync shared by every
// append waiting at the time, for a server that does not fsync each message itself). A sync failure is
// ErrUnknownOutcome: the events are stored but not known to be durable.
func WithSync(sync func(ctx context.Context, stream string) error) Option {
	return func(o *options) error {
		o.sync = sync
		return nil
	}
}
