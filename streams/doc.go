// Package streams is the JetStream event store of capacityd: one stream per home region
// (CAPACITY_<REGION>, subjects capacity.<region>.>), one subject per pool, optimistic concurrency on the
// subject's last sequence. It stores opaque events (type, version, id, bytes); PoolEvents adapts it to
// capacity.EventStore, and Decode is the one decoder of a stored message (subject, headers, body), used by
// the store's reads and by streams/projection.
//
// Layers: streams imports capacity (for the domain adapter and capacity.ValidID) and never capacity/pools,
// capacity/views, kv or web; storage knows no HTTP.
//
// # Appending
//
// Append(pool, expectedSeq, events) stores events iff the pool's subject ends at expectedSeq. One event is a
// plain publish with Nats-Expected-Last-Subject-Sequence and Nats-Msg-Id. Several events are one atomic batch
// (Nats-Batch-Id, Nats-Batch-Sequence 1..n, Nats-Batch-Commit: 1 on the last), with the expected sequence on
// the first message only: a check on the same subject later in the batch would see the batch's own messages
// (the server answers 10164). Messages 1..n-1 are core publishes without a reply subject; the commit is a
// request whose reply is the batch's PubAck, decoded here because nats.go's PubAck lacks the batch and count
// fields the server adds to it.
//
// # What the server source says about atomic batches (nats-server v2.15.2)
//
//   - Contiguous sequences. On an R1 stream the commit message (stream.go, processJetStreamAtomicBatchMsg)
//     takes mset.isolateMu before checking and holds it while it stores every staged message through
//     processJetStreamMsgWithBatch(needIsolation=false); every other write to the stream takes isolateMu
//     first, and all client publishes to a stream are handled by its single internalLoop goroutine. On a
//     replicated stream the whole batch is proposed with one node.ProposeMulti under mset.clMu with
//     consecutive clseq values, and replicas apply it only once complete, rejecting a batch interrupted by
//     any other entry (jetstream_cluster.go, applyStreamEntries). So a batch of n events occupies exactly
//     lastSeq-n+1 .. lastSeq, and Append returns lastSeq alone. The tests check this with interleaved pools.
//   - Replies. A staged (non-commit) message gets an empty reply only if it carries a reply subject ("let
//     them know we've persisted the data prior to commit"); without one the server says nothing, even on
//     error. A failed staged message discards the batch, and the commit is then answered 10176 (incomplete)
//     or 10199 (too large). The commit's reply is the usual PubAck plus "batch" and "count".
//   - Limits. At most 1000 messages a batch (JetStreamLimits.MaxBatchSize can lower it; ErrBatchTooLarge
//     is returned before sending above 1000), 50 open batches per stream and 1000 per server (a further
//     batch is refused with 10210, which a commit-only client sees as 10176 since the refused first
//     message has no reply subject), batch ids of at most 64 characters, a batch idle for 10 s is abandoned.
//     A Store keeps at most WithMaxInflightBatches (default 32) batches open at once so that many pools
//     appending concurrently never hit the per-stream limit. Nats-Expected-Last-Msg-Id is refused inside
//     a batch (10177). Any failed check rejects the whole batch: nothing is stored.
//   - Cost. On an R1 file stream every batch is staged in its own small file store (newBatchStore: a
//     directory, a block file, stream metadata, flushed with SyncOnFlush, removed after the commit), all in
//     the stream's one internalLoop goroutine. A batch therefore has a fixed cost of a few filesystem
//     metadata operations and an fsync, independent of the stream's sync_interval; on disks with slow
//     metadata operations it dominates. Replicated streams stage batches in memory.
//
// # Retries and unknown outcomes
//
// The contract: an Append that finds its own events stored right after expectedSeq succeeds and returns
// their last sequence, whatever the server answered. "Its own" means the first message on the pool's subject
// after expectedSeq has the Nats-Msg-Id of the first event (and, for several events, the message
// len(events)-1 later has the last event's id). This is checked, through the stream leader
// ($JS.API.STREAM.MSG.GET, never a direct get that a follower or mirror could answer), when:
//
//   - the request failed without a server answer (timeout, cancelled context, no responders, closed
//     connection): stored -> success; another event follows expectedSeq -> ErrConflict (ours can never be
//     stored now); nothing follows -> an error wrapping ErrUnknownOutcome and the original error (the
//     request may still be in flight); the lookup fails -> ErrUnknownOutcome;
//   - the server answered 10071 or 10164 (wrong last sequence): an R1 stream checks the expected sequence
//     before the Nats-Msg-Id dedupe (stream.go), so a retry of a stored single event gets 10071; stored ->
//     success, else ErrConflict;
//   - a batch was answered 10201 (its message ids are in the dedupe window; batches get an error, not a
//     Duplicate ack): stored -> success, else an error saying the ids were reused.
//
// A Duplicate ack (an R3 stream dedupes before checking) is a success with the original sequence. So
// repeating an Append with the same expectedSeq and the same event ids is safe, even after other appends
// followed it. Deduplication by the server itself only lasts the duplicate window (WithDuplicateWindow,
// 2 minutes by default); the lookup does not depend on it. Callers must make ids unique per event.
//
// # Reading
//
// Read and Log use an ordered consumer (served by the stream leader) starting at the wanted sequence and stop
// at the pool's (or stream's) last sequence as of the call; the consumer is deleted afterwards. LastSeq uses
// the leader-served message get. Pools lists the subjects with StreamInfo's subject filter.
//
// # Stream configuration
//
// New creates the stream, or updates an existing one it owns, to: file storage, AllowAtomicPublish,
// AllowDirect, the duplicate window and replicas from the options, limits retention with no MaxAge, MaxMsgs,
// MaxBytes, MaxMsgsPerSubject, per-message TTL, subject delete markers or rollups: anything that removes or
// adds messages would move a pool's last sequence. It refuses a stream that is a mirror (updating it would
// promote it) or that holds another region's subjects, and checks the resulting configuration.
package streams
