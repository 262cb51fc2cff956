// Package projection feeds read models from a JetStream durable pull
// consumer: the event stream is the only source, the command side never
// writes twice (no dual writes). It imports streams and capacity, never
// capacity/views (models are reached through the Handler and Model
// interfaces) or web.
//
// A Runner owns one durable consumer on one stream and one Handler (usually
// Apply(models...) over capacity/views). Run decodes each message with
// streams.Decode and Recorded.Events, the decoder the store's own reads use
// (pool from the subject, Event-Type and Event-Version headers, JSON body; a
// capacity.CommitType message holds several events of one pool that share
// its sequence), hands it to the handler in stream order from a single
// goroutine, and acknowledges it.
//
// Start. The models live in memory, so a new process starts empty, while a
// durable left over from the previous process has its ack floor somewhere
// unrelated to what the models hold: resuming it could silently skip
// events. Run therefore deletes the durable and creates it again each time
// it starts (and each time it re-establishes the consumer after an error or
// after an operator deleted it), delivering from the runner's own position
// + 1. That position is 0 for a fresh runner without checkpoints (deliver
// from sequence 1), where it stopped for a runner run again in the same
// process, and, with WithCheckpoints, the sequence of the checkpoint it
// loaded (checkpoint.go: an object per stream in an object store bucket,
// checked against the stream before it is trusted; any doubt rebuilds from
// 1). The durable exists so operators can watch progress with
// `nats consumer info`, and so the server, not the client, tracks what is
// outstanding. Durable names must be unique per process (see DurableName):
// two processes sharing a durable would split the stream between them.
//
// Caught up. At its first session the runner reads the stream's last
// sequence; the models are caught up (CaughtUp, Status.CaughtUp) once the
// position reaches it. capacityd's /readyz waits for that.
//
// Checkpoints are begun from the runner's goroutine between two events
// (State.BeginCheckpoint notes the position and so agrees with the last
// message applied) every N events or T once something is new, then
// encoded and stored on a goroutine of the runner's while it goes on
// applying events: the models encode a few rows at a time under their read
// lock (views: a fuzzy checkpoint, whose pools may hold events after its
// position, which the stream after the position brings to every pool
// anyway). One checkpoint is in flight at a time; one more is written,
// synchronously, when Run returns, after the one in flight. The metadata
// names the last message applied when the checkpoint began (last_msg_*)
// and the last one handed to the models when its encoding ended
// (end_msg_*); a load asks the stream to vouch for both. An encoding or a
// save that fails makes the next checkpoint due even if nothing is new. A
// checkpoint is encoded into a spool file, never into memory
// (hundreds of MB at a million pools, which the garbage collector's
// headroom doubled), and stored from it at the pace the bucket's stream
// stores its chunks (pace.go).
//
// Acks. The consumer uses AckAll: acknowledging sequence N acknowledges
// everything before it, so the runner acks once per half batch and whenever
// it has caught up (NumPending == 0), not once per message; catch-up is
// bounded by decoding, not by ack traffic. The server's ack floor therefore
// trails the runner's position by at most half a batch while busy, and
// equals it when idle. Position (what WaitFor and Status report) is the
// highest stream sequence the handler has applied or skipped.
//
// Failures. A message that does not decode (missing or unknown type, newer
// schema version, malformed body, foreign subject) is poison: logged with
// its sequence, counted, passed to the handler as an Event with a nil
// payload so models can move their position, and acked. The runner never
// stops for it. A handler error is taken as transient: the runner retries
// the same event with backoff, keeping it alive with InProgress, and
// delivers nothing after it until it succeeds, so events of a pool are never
// applied out of order. Redeliveries (AckWait expiry, a reconnect) of
// sequences at or below the position are acked without calling the handler;
// the views ignore them as well.
//
// Reading your writes. A client that wrote at stream sequence V asks for
// min_position V; WaitFor(ctx, V) returns once the position is >= V, woken by
// the runner (no polling), or with the context's error. Because the consumer
// is unfiltered, every stored message reaches the runner, so a caught-up
// runner's position is the stream's last sequence; Status also moves the
// position to the stream's last sequence when the consumer reports nothing
// pending or unacknowledged, which covers a tail of deleted messages.
//
// Speed. Catch-up is bound by CPU: per event about 4 us of JSON decoding
// (capacity.Decode) in the runner goroutine, plus the server's delivery and
// the client's parsing, each a few microseconds on its own goroutine (see
// BenchmarkCatchUp). Acks are amortised by AckAll; MaxAckPending (default
// 20000) and the pull batch (default 1000) keep the pipeline full.
package projection
