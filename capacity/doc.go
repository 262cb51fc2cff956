// Package capacity is the domain of the reservation service: capacity pools,
// the commands that change them and the events that record what happened.
//
// It is pure: no I/O, no goroutines, no clock. Decide(pool, command, now)
// says which events a command produces or why it is refused; Pool.Evolve
// folds one event into the state. Replaying a pool's events from the first,
// or from a snapshot (MarshalSnapshot) plus the events after it, gives the
// same pool; the package's property tests check exactly that.
//
// Time is an argument, never read: a hold past its deadline stops counting
// against capacity at the first decision taken after the deadline, whether or
// not an Expired event has been written yet. Expired events are bookkeeping
// written later by a sweeper (see Expire).
//
// Events are JSON, versioned by SchemaVersion, and carry their own time, so
// a history means the same thing when replayed years later.
//
// Layers: capacity is the centre and imports nothing of the repository,
// nor NATS, HTTP or logging. The write side (capacity/pools) and the read
// side (capacity/views) meet only here: PoolView is the pool as clients see
// it, answered by the one and listed by the other, and ValidID is the one
// check of pool, reservation, region and kind ids ([A-Za-z0-9_-]{1,64}),
// used by every layer that takes an id. Two JSON shapes of a pool are
// deliberate and not PoolView: the snapshot (MarshalSnapshot, a storage
// format with its reservations, versioned with the events) and the API's
// pool object (web, a public contract, docs/API.md). Likewise a pool's
// definition (id, region, kind, times, capacity, overbook) is spelled out in
// four roles: DefinePool (the command), PoolDefined (the event, a stored
// format), Pool (the state) and PoolView (what clients see). They are kept
// apart on purpose, so that a stored event's JSON never moves with a
// command or a view.
package capacity
