package kv

import "fmt"

// Option configures Snapshots created by New.
type Option func(*options) error

// options holds the bucket settings New applies.
type options struct {
	history  uint8
	replicas int
	attempts int
}

func defaultOptions() options {
	return options{history: 1, replicas: 1, attempts: 10}
}

// WithHistory sets how many values per key the bucket keeps (1..64, default 1).
func WithHistory(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("%w: history %d, want 1..64", ErrInvalid, n)
		}
		o.history = uint8(n)
		return nil
	}
}

// WithReplicas sets the number of bucket replicas (1..5, default 1).
func WithReplicas(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 5 {
			return fmt.Errorf("%w: replicas %d, want 1..5", ErrInvalid, n)
		}
		o.replicas = n
		return nil
	}
}

// WithPutAttempts bounds the compare-and-set rounds of one Put under contention (default 10).
func WithPutAttempts(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: put attempts %d, want >= 1", ErrInvalid, n)
		}
		o.attempts = n
		return nil
	}
}
