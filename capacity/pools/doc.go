// Package pools runs the write side: one entity per capacity pool in this
// process, the single writer of that pool's history here.
//
// Commands for a pool queue up on its entity. The entity takes everything
// queued (up to Options.MaxBatch), decides each command against the pool's
// state in turn, appends all resulting events in one append (one JetStream
// message: the event itself, or a capacity.commit holding the batch's events,
// see streams.PoolEvents; hence one write, and one fsync when fsync is on:
// group commit), and answers every caller only after the store has
// acknowledged the append, showing the pool as it was decided: at the clock
// reading the batch was decided at, never a later one (a later reading could
// show a hold lapsed that no event records, and a writer whose clock is
// behind would undo it). Throughput on a hot pool comes from batching, not
// from retries.
//
// Several processes may run entities for the same pool against one NATS:
// every append carries the sequence the entity last saw, so the store refuses
// it if another writer got there first. The entity then drops its state,
// reloads (snapshot + tail) and decides the batch again, at most
// Options.MaxAttempts times. Because state is only trusted after an
// acknowledged append, a failed or unknown append also drops the state: the
// next command reloads it from the store, the source of truth.
//
// Loading reads the pool's snapshot (if any, and if it is not ahead of the
// stream) and the events after it. Every Options.SnapshotEvery events (or
// every so many as the pool has reservations, if more) the entity encodes a
// snapshot on its own goroutine, in the write path, and hands the bytes to a
// writer goroutine that stores them off that path.
//
// A sweeper timer per entity writes Expired events for holds past their
// deadline; capacity is free from the deadline on regardless, because
// decisions take the time. Service.SweepLapsed does the same for pools that
// are not in memory, asking a read model which pools have lapsed holds. An
// entity idle for Options.IdleTimeout with no live hold is evicted from
// memory and reloads on its next command. Metrics exports the appends and
// the service's running totals to Prometheus.
//
// Layers: pools is the write side. It imports capacity (the rules, the
// EventStore and SnapshotStore interfaces it writes through) and nothing of
// the repository else: never capacity/views (the read side; the two meet
// only in capacity, so the sweeper takes the LapsedPools interface),
// streams, kv or web. cmd/capacityd wires it to streams.PoolEvents and
// kv.PoolSnapshots.
package pools
