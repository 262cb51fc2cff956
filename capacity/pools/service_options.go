package pools

import (
	"time"

	"github.com/rs/zerolog"
)

// Options tune a Service. The zero value of each field means its default.
type Options struct {
	// Region is the home region of the pools this service writes; it is
	// reported as every answered pool's HomeRegion.
	Region string
	// MaxBatch is the most commands one pool decides and appends together
	// (group commit). Default 256.
	MaxBatch int
	// MaxEvents caps the events of one append. They are stored as one
	// message (a capacity.commit), so this bounds its size: 1000 events stay
	// far below NATS's default 1 MB payload limit. Default and at most 1000.
	MaxEvents int
	// QueueSize is how many commands wait in one pool's buffer; further
	// callers block on it, and the writer still takes up to MaxBatch in one
	// round (a receive hands a blocked sender's command over). The buffer is
	// allocated with the pool, so it is kept small: memory per pool matters
	// more than a deep buffer. Default 64.
	QueueSize int
	// SnapshotEvery writes a snapshot after this many events. Default 1000.
	SnapshotEvery int
	// IdleTimeout evicts a pool from memory once it has had no command for
	// this long, live holds or not (SweepLapsed then writes their Expired
	// events). Default 1m: an idle pool costs the write side nothing once
	// evicted, and reloading one (snapshot + tail) costs a command a few
	// milliseconds once a minute at most.
	IdleTimeout time.Duration
	// MaxAttempts bounds the decide-append rounds of one batch when other
	// writers keep winning. Default 16.
	MaxAttempts int
	// AppendTimeout bounds one append. Default 10s.
	AppendTimeout time.Duration
	// BatchAcrossPools appends the commits of all pools that are ready at
	// the same moment together, as one atomic batch (one write, one fsync),
	// one batch in flight at a time. It pays where each write is
	// expensive (fsync before ack, a replicated stream); with lazy fsync a
	// pool's lone publish is cheaper than a batch's fixed cost. Default off.
	BatchAcrossPools bool
	// MinBatchCommits is the fewest pool commits worth a cross-pool batch;
	// fewer waiting go out as lone appends side by side. An atomic batch on
	// an R1 file stream has a fixed cost (the server stages it in a file
	// store of its own: ~11 ms here under load, against ~0.3 ms for one
	// fsync'd publish; BenchmarkAppendAll in streams), so it pays only
	// from a few dozen commits. Default 32; 1 batches whatever waits.
	MinBatchCommits int
	// MaxBatchCommits caps the pool commits of one cross-pool batch; the
	// server takes at most 1000 messages a batch. Default 1000.
	MaxBatchCommits int
	// RequestTimeout bounds how long a caller waits for its command's
	// answer, queueing included, when its context has no earlier deadline.
	// Past it the caller gets EUNAVAILABLE "outcome unknown". Default 15s.
	RequestTimeout time.Duration
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
		o.IdleTimeout = time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 16
	}
	if o.AppendTimeout <= 0 {
		o.AppendTimeout = 10 * time.Second
	}
	if o.MinBatchCommits <= 0 {
		o.MinBatchCommits = 32
	}
	if o.MaxBatchCommits <= 0 || o.MaxBatchCommits > 1000 {
		o.MaxBatchCommits = 1000
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.SweepGrace <= 0 {
		o.SweepGrace = 100 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
