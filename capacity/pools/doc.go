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
// half the pool's reservations if more, at most 50,000: snapshotInterval)
// the entity hands a copy of its state to a writer goroutine that encodes
// and stores it off the write path. The copy (Pool.Clone) shares the
// reservations, which Evolve never changes in place, so it costs a copy of
// the map of pointers, not of every reservation: about 6 ms for 70,000
// holds against 45 ms for a deep copy; encoding them takes the snapshot
// writer about 36 ms. Finished
// reservations retire to compact records after capacity.RetainFinished, so
// a snapshot stays small however long the pool's history.
//
// A sweep timer per entity (one time.Timer behind them all, timers.go)
// writes Expired events for holds past their deadline; capacity is free
// from the deadline on regardless, because decisions take the time. Service.SweepLapsed does the same for pools that
// are not in memory, asking a read model which pools have lapsed holds. An
// entity idle for Options.IdleTimeout is evicted from memory, live holds or
// not (their Expired events then come from SweepLapsed), and reloads on its
// next command. Metrics exports the appends and
// the service's running totals to Prometheus.
//
// Bookings (booking.go) hold units in several pools all or nothing. A
// coordinator (the caller's goroutine, counted by Close) sends a part
// request into each pool's entity queue, one pool after the other in
// pool-id order. An entity that reaches the part in its batch first appends
// and answers what the batch decided before it, so its state is stored;
// then it decides the part against that state (a refusal is answered at
// once and holds nothing), hands the coordinator its expected sequence and
// events, and waits, deciding nothing else, for the verdict. Taking the
// pools in one global order is what keeps two bookings over the same pools
// from waiting on each other in a circle: the one that got the lower pool
// first gets the rest, the other queues behind it. Once every part is in:
// if any pool refused, every entity is let go with nothing written and the
// booking is refused naming the first refusing pool in the client's item
// order; else all parts go out as one unit (one atomic batch, each message
// with its pool's expected sequence) through the cross-pool committer, or
// straight to EventStore.AppendAll when it is off, and each entity is told
// where its part was stored (it evolves and stamps) or that the outcome is
// not known (it drops its state and reloads, as after a failed append).
// When another instance moved one of the pools (a StaleError), nothing was
// stored: the whole booking is decided again, at most 8 times. Every wait
// is bounded: the coordinator by the caller's context and RequestTimeout,
// the entity by RequestTimeout + AppendTimeout and by shutdown; the append
// itself, like an entity's, is not cut short by Close, so the caller learns
// the real outcome.
//
// Why this and not a coordinator that reads the pools' states and decides
// by itself: the entities are the single writers of their pools here, so
// deciding inside them keeps one place where a pool's state is touched and
// one set of rules (capacity.Decide on HoldBooking and friends); and a part
// waits only for its own booking's append, one round trip, while the
// pool's queue keeps filling for its next group commit.
//
// A booking has one deadline: the coordinator picks it (now + ttl) and
// every part holds until then, so every part lapses at the same instant and
// decisions count none of them from then on. The Expired records are
// written together too: the per-pool sweeper (capacity.Expire) skips holds
// that belong to a booking and hands them to the service's booking expirer,
// which runs ExpireBooking over all the booking's pools as one unit.
// Confirm, release and extend of a booking move every pool the same way.
//
// Where a booking is kept: nowhere but its pools. Each pool has an
// ordinary reservation whose id is the booking id, and its Held event
// carries the booking's item list. So any one pool's history (or the
// reservation read model, which indexes every pool's reservations by id)
// says which pools the booking spans; a GET reads all of them at one point
// of their histories with the same locking protocol (a part that decides
// nothing), so a booking is never seen partly held. The service remembers
// the items of the bookings it wrote (KnownBooking) so a confirm right after
// a booking needs no read model.
//
// Layers: pools is the write side. It imports capacity (the rules, the
// EventStore and SnapshotStore interfaces it writes through) and nothing of
// the repository else: never capacity/views (the read side; the two meet
// only in capacity, so the sweeper takes the LapsedPools interface),
// streams, kv or web. cmd/capacityd wires it to streams.PoolEvents and
// kv.PoolSnapshots.
package pools
