// Package kv keeps the latest snapshot of each pool in a JetStream key-value bucket.
//
// The package is domain-agnostic: a snapshot is opaque bytes (the folded state of a pool, see
// capacity.Pool.MarshalSnapshot) and the stream sequence of the last event folded into it. Each value is a
// JSON header line, {"seq":N,"bytes":L}, then the L bytes of the state, so `nats kv get pool_snapshots <key>`
// shows which sequence a snapshot reflects. Values of the earlier form {"seq":N,"state":<JSON>} are still
// read.
//
// Layers: kv imports capacity (PoolSnapshots adapts a bucket to capacity.SnapshotStore) and never
// capacity/pools, capacity/views, streams or web. Its name checks are deliberately not capacity.ValidID:
// they are NATS's rules for bucket names and keys (a key holds a dot, <region>.<pool>).
//
// # Never backwards
//
// Put is a compare-and-set loop: read the key, return if the stored sequence is already at or past the
// new one, otherwise Create (no value yet, or the last value was deleted) or Update at the revision read.
// A lost race (jetstream.ErrKeyExists, jetstream.ErrKeyRevisionMismatch, which covers both "wrong last
// sequence" codes 10071 and 10164) starts a new round; after a bounded number of rounds Put fails. A stored
// value that does not decode is overwritten, so one bad write cannot wedge a pool.
//
// Reading the key means reading the whole value, several MB for a pool with 100,000 reservations. So for a
// value of 64 KiB or more Put remembers the revision and sequence it stored, and the next Put of that key
// with a higher sequence starts with an Update at the remembered revision, without the read; if anything
// else wrote or deleted the key in between, the revision differs, the Update is refused and Put goes round
// the loop above. One case it cannot see: the bucket deleted and made again, and another writer's value
// landing at the very revision remembered. Put may then move that snapshot backwards, which costs a longer
// tail at the next load, nothing more (see Staleness).
//
// # Staleness
//
// Get uses the bucket's direct get, which on a replicated bucket may be answered by a follower that lags the
// latest Put. That is safe for snapshots: an older snapshot only means replaying more events from the
// stream. Put's compare-and-set still runs against the leader, so a stale read costs a retry, not a
// backwards move.
//
// # Errors
//
// Get returns ErrNotFound when the key has no value (never written, or deleted) and ErrCorrupt, wrapped with
// the reason, when the value is not a snapshot. When the bucket itself has been deleted, Get and Put return
// the underlying NATS error (no responders for the direct get); creating the bucket again with New makes
// every Snapshots value for that bucket name usable again.
package kv
