package pools

import (
	"time"

	"github.com/rs/zerolog"
)

// Options tune a Service. The zero value of each field means its default.
type Options struct {
	// MaxBatch is the most commands one pool decides and appends together
	// (group commit). Default 256.
	MaxBatch int
	// MaxEvents caps the events of one append. They are stored as one
	// message (a capacity.commit), so this bounds its size: 1000 events stay
	// far below NATS's default 1 MB payload limit. Default and at most 1000.
	MaxEvents int
	// QueueSize is how many commands may wait for one pool before callers
	// block. Default 4096.
	QueueSize int
	// SnapshotEvery writes a snapshot after this many events. Default 1000.
	SnapshotEvery int
	// IdleTimeout evicts a pool from memory once it has had no command for
	// this long and has no live hold. Default 10m.
	IdleTimeout time.Duration
	// MaxAttempts bounds the decide-append rounds of one batch when other
	// writers keep winning. Default 16.
	MaxAttempts int
	// AppendTimeout bounds one append. Default 10s.
	AppendTimeout time.Duration
	// SweepGrace is how long after a hold's deadline the sweeper writes its
	// Expired event. Default 100ms.
	SweepGrace time.Duration
	// NoTailCheck skips asking the store for the pool's last sequence
	// before answering a batch that writes nothing (reads, repeats,
	// refusals). By default such a batch does ask, so its answer reflects
	// what other instances wrote; only a deployment with a single writer
	// per pool may skip it.
	NoTailCheck bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives load, snapshot and conflict logs. Default: nothing.
	Logger zerolog.Logger
	// OnAppend, when set, is called after each successful append with the
	// number of commands and events it carried and how long it took.
	OnAppend func(commands, events int, took time.Duration)
}

func (o Options) withDefaults() Options {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.MaxEvents <= 0 || o.MaxEvents > 1000 {
		o.MaxEvents = 1000
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = 1000
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 16
	}
	if o.AppendTimeout <= 0 {
		o.AppendTimeout = 10 * time.Second
	}
	if o.SweepGrace <= 0 {
		o.SweepGrace = 100 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
