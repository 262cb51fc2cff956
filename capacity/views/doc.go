// Package views holds the read models of capacity pools: pure in-memory
// projections fed decoded events, with no I/O of their own. A runner
// (streams/projection) feeds them from a JetStream durable pull consumer;
// tests feed them from a slice.
//
// Layers: views is the read side. It imports capacity only: never
// capacity/pools (the write side; both use capacity.PoolView), streams or
// web. Availability's query type and its page limits (DefaultLimit,
// MaxLimit) are the ones the API uses; web adds only the HTTP names.
//
// Every model has the same two entry points: Apply(pool, seq, e), which
// ignores any seq at or below the last one applied to that pool, so a
// redelivered message never counts twice, and Position, the highest stream
// sequence applied (or skipped with Advance). A query returns the position it
// reflects, read under the same lock as its data.
//
// Models keeps one capacity.Pool per pool and evolves it with the domain's
// own Evolve, so the models' figures equal those of the write side by
// construction rather than by a second implementation of the rules. The
// three models (Availability, Reservations, Board) share that one folded
// copy of each pool: one Apply folds a commit once and updates each model's
// index (availability's start-time order, the reservation id index, the
// board's cells). Sharing cut the read side's memory per pool
// and per reservation to less than half (see the README). NewAvailability,
// NewReservations and NewBoard each return a model over Models of its own,
// for tests; a model's Apply feeds its whole Models, and a commit applied
// through a second model of the same Models is a redelivery, ignored.
//
// Concurrency: one writer (the runner) and many readers. One sync.RWMutex
// in Models guards the pools and every index. capacity.Pool.FiguresAt caches
// lapsed-hold units in the pool and so writes on read; readers here never
// call it. Availability reads the pool's own deadline heap instead
// (capacity.Pool.LapsedAt, which writes nothing) and keeps a per-pool memo
// published through an atomic pointer, so a query at time now counts a hold
// past its deadline as free (before its Expired event is written) in time
// proportional to the lapsed holds, not to the pool's history. A row keeps
// no copy of what the pool has (counts, deadlines): a million idle pools
// are a million rows.
//
// Checkpoints are fuzzy (checkpoint_write.go): written while events are
// applied, a group of rows at a time under the read lock (200 us at most;
// a pool of 1,024 reservations or more is cloned under it and encoded
// without it), so Apply waits for a group or a clone, not for the seconds
// a million pools take. A
// checkpoint is at the position it began at, P0; each pool in it is as of
// its own last sequence, at or after P0; pools made after P0 are left out.
// Loaded and fed the stream from P0+1, the models equal a full replay:
// Apply skips what a pool holds already. The reservation index is read
// after the rows, a part at a time, and its maps never move an entry from
// one to the other, so the read meets every entry there when it began. A
// Refold or a restore meanwhile abandons the checkpoint (Models.epoch).
//
// Checkpoints (checkpoint.go) load lazily: a large pool keeps its snapshot
// encoded, beside a head of what queries read (the view's fields, units,
// live holds' deadlines), until an event decodes it under the write lock
// or a lookup decodes a copy under the read lock (a sync.Once in the body,
// the row itself unchanged; lazy.go). The reservation index keeps a
// checkpoint's ids as sorted 64-bit hashes, as the checkpoint stores them,
// beside its maps of the ids added since; a lookup asks the pool, so a hash
// that matches another id finds nothing.
//
// The board aggregates pools per region, kind, day and slot, and counts
// holds as recorded: a lapsed hold leaves the board when its Expired event
// arrives (the write side's sweeper writes it shortly after the deadline).
// That keeps the board, and its change feed, a function of the stream alone.
// The change feed never blocks the writer: a subscriber whose buffer is full
// is dropped (its channel closed) and must read the board again and
// resubscribe; changes carry the stream sequence so a client can discard
// those already reflected in the board it read.
package views
