package projection

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/streams"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// ErrRunning is returned by Run while another Run of the same Runner is active.
var ErrRunning = errors.New("projection: runner already running")

// Event is one message of the stream, decoded, as a Handler receives it: a
// commit of one or more events of one pool, sharing the message's sequence.
type Event struct {
	Pool   string           // pool id, from the subject
	Seq    uint64           // stream sequence
	Events []capacity.Event // in order; nil for a poison message: nothing to apply, only the position moves
	// Traceparent is the W3C trace context the commit was written under
	// (its traceparent header), "" if none. The handler's context carries
	// the projection's span, a child of it.
	Traceparent string
}

// TracedModel is a Model that keeps the trace of the commits it applies
// (views.Board sends it with its changes); Apply calls ApplyTraced instead
// of Apply when the commit has one.
type TracedModel interface {
	Model
	// ApplyTraced is Apply with the commit's W3C traceparent.
	ApplyTraced(pool string, seq uint64, traceparent string, events ...capacity.Event)
}

// Handler applies events in stream order; the Runner calls it from one
// goroutine. An error means the event was not applied: the Runner retries
// the same event and delivers nothing after it until the handler succeeds.
type Handler func(ctx context.Context, ev Event) error

// Model is a read model a Runner can feed; the models of capacity/views are Models.
type Model interface {
	// Apply applies the events of one commit stored at stream sequence seq,
	// ignoring a seq already applied to the pool.
	Apply(pool string, seq uint64, events ...capacity.Event)
	// Advance records that seq was seen and held nothing to apply.
	Advance(seq uint64)
}

// Apply returns a Handler that feeds every model, in the order given.
func Apply(models ...Model) Handler {
	return func(_ context.Context, ev Event) error {
		for _, m := range models {
			traced, ok := m.(TracedModel)
			switch {
			case len(ev.Events) == 0:
				m.Advance(ev.Seq)
			case ok && ev.Traceparent != "":
				traced.ApplyTraced(ev.Pool, ev.Seq, ev.Traceparent, ev.Events...)
			default:
				m.Apply(ev.Pool, ev.Seq, ev.Events...)
			}
		}
		return nil
	}
}

// Runner feeds a Handler from a durable pull consumer on one stream.
type Runner struct {
	js      jetstream.JetStream
	stream  string
	durable string
	handler Handler
	opts    options

	running  atomic.Bool
	position atomic.Uint64
	waiters  atomic.Int64
	mu       sync.Mutex
	wake     chan struct{} // closed when the position moves and someone waits; nil if nobody does

	applied, poison, redelivered, retries, restarts atomic.Uint64

	// Start: where the first delivery began and the stream's last sequence
	// then, which the models must reach to be caught up.
	startSeq, target atomic.Uint64
	started          atomic.Bool // startSeq and target are set
	loaded           atomic.Uint64
	fallback         atomic.Pointer[string] // why no checkpoint was loaded

	// Checkpoints. The fields without atomics belong to the goroutine of Run.
	created time.Time // the stream's creation time
	lastMsg lastMsg   // the last message applied
	// seen is the last message handed to the handler, noted before the
	// handler is called (or the end of the checkpoint loaded): no event
	// the state holds is after it. Read by the checkpoint in flight.
	seenMu              sync.Mutex
	seen                lastMsg
	savedSeq, sinceSave uint64
	savedAt, retryAt    time.Time
	saving              chan struct{}  // holds a token while no checkpoint is in flight
	wg                  sync.WaitGroup // the checkpoints being encoded and saved in the background
	cpSaved, cpFailures atomic.Uint64
	cpRedo              atomic.Bool // the last checkpoint begun was not saved: write another even if nothing is new
	runStart            time.Time   // when Run first began
	caughtUpLogged      bool
}

// New returns a Runner feeding handler from the durable consumer named
// durable on stream. Nothing happens on the server until Run.
func New(js jetstream.JetStream, stream, durable string, handler Handler, opts ...Option) (*Runner, error) {
	if js == nil || handler == nil {
		return nil, fmt.Errorf("projection: nil JetStream or handler")
	}
	if stream == "" || durable == "" || strings.ContainsAny(stream+durable, ".*> \t\r\n/\\") {
		return nil, fmt.Errorf("projection: invalid stream %q or durable %q", stream, durable)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	o.batch = max(1, min(o.batch, o.maxAckPending/2))
	r := &Runner{js: js, stream: stream, durable: durable, handler: handler, opts: o, saving: make(chan struct{}, 1)}
	r.saving <- struct{}{}
	return r, nil
}

// DurableName returns the conventional durable name of a projection of a
// region in one process instance, "capacity_<projection>_<region>_<instance>",
// with every character outside [A-Za-z0-9_-] replaced by an underscore.
func DurableName(projection, region, instance string) string {
	name := []byte("capacity_" + projection + "_" + region + "_" + instance)
	for i, c := range name {
		if !capacity.ValidID(string(c)) {
			name[i] = '_'
		}
	}
	return string(name)
}

// Durable returns the name of the Runner's durable consumer.
func (r *Runner) Durable() string { return r.durable }

// Position returns the highest stream sequence the handler applied or skipped.
func (r *Runner) Position() uint64 { return r.position.Load() }

// Run (re)creates the durable consumer and feeds the handler until ctx ends,
// then stops consuming, acks what it applied and returns nil. A failure to
// create the consumer the first time (no such stream, say) is returned;
// later failures (connection loss, the consumer deleted) are logged and the
// consumer is created again, after a backoff, from the current position.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	log := r.opts.logger
	if r.runStart.IsZero() {
		r.runStart = time.Now()
	}
	if r.opts.checkpoints != nil && !r.started.Load() && r.position.Load() == 0 {
		start := time.Now()
		pos, why := r.loadCheckpoint(ctx)
		if pos > 0 {
			r.loaded.Store(pos)
			r.savedSeq, r.savedAt = pos, time.Now()
			r.advance(pos)
			log.Info().Str("durable", r.durable).Uint64("seq", pos).Dur("took", time.Since(start)).Msg("projection: resuming from checkpoint")
		} else {
			r.fallback.Store(&why)
			log.Info().Str("durable", r.durable).Str("reason", why).Msg("projection: rebuilding from the stream")
		}
	}
	defer func() {
		// At shutdown: one last checkpoint, so the next start reads no tail.
		final, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.checkpointTimeout)
		defer cancel()
		r.checkpoint(final, true)
		r.wg.Wait()
	}()
	backoff := 50 * time.Millisecond
	for first := true; ; first = false {
		before := r.position.Load()
		err := r.session(ctx, first)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errSetup) && first {
			return err
		}
		if r.position.Load() > before {
			backoff = 50 * time.Millisecond
		}
		r.restarts.Add(1)
		log.Warn().Err(err).Str("durable", r.durable).Uint64("position", r.position.Load()).
			Dur("backoff", backoff).Msg("projection: consumer interrupted, recreating")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// errSetup marks a failure to create the consumer.
var errSetup = errors.New("projection: create consumer")

// session creates the consumer and consumes until ctx ends or an error.
func (r *Runner) session(ctx context.Context, first bool) error {
	if !r.started.Load() {
		// The stream's last sequence as of start: the models are caught up,
		// and the instance ready, once they reach it.
		ictx, cancel := context.WithTimeout(ctx, r.opts.timeout)
		stream, err := r.js.Stream(ictx, r.stream)
		cancel()
		if err != nil {
			return fmt.Errorf("%w %s on %s: %w", errSetup, r.durable, r.stream, err)
		}
		info := stream.CachedInfo()
		if r.created.IsZero() {
			r.created = info.Created
		}
		r.startSeq.Store(r.position.Load() + 1)
		r.target.Store(info.State.LastSeq)
		r.started.Store(true)
		if r.savedAt.IsZero() {
			r.savedAt = time.Now()
		}
		r.noteCaughtUp()
	}
	cons, err := r.recreate(ctx)
	if err != nil {
		return fmt.Errorf("%w %s on %s: %w", errSetup, r.durable, r.stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(r.opts.batch), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return fmt.Errorf("projection: consume %s: %w", r.durable, err)
	}
	defer it.Stop()
	ackEvery := max(1, r.opts.batch/2)
	var last jetstream.Msg // highest message applied and not acked yet
	var lastSeq uint64
	unacked := 0
	defer func() {
		if last != nil {
			_ = last.Ack() // best effort: the next Run recreates the durable anyway
		}
	}()
	for {
		m, err := r.next(ctx, it)
		if errors.Is(err, errCheckpointDue) {
			if r.checkpointDue() {
				r.checkpoint(ctx, false)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("projection: next message: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("projection: message metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		if meta.NumDelivered > 1 {
			r.redelivered.Add(1)
		}
		if seq > r.position.Load() {
			ev := r.decode(m, meta)
			msg := lastMsg{seq: seq, subject: m.Subject(), id: m.Headers().Get(nats.MsgIdHdr)}
			if r.opts.checkpoints != nil {
				r.noteSeen(msg)
			}
			if err := r.handle(ctx, m, ev); err != nil {
				return err
			}
			r.lastMsg = msg
			r.sinceSave += uint64(max(1, len(ev.Events)))
			r.advance(seq)
			r.noteCaughtUp()
		}
		if last == nil || seq >= lastSeq {
			last, lastSeq = m, seq
		}
		unacked++
		if unacked >= ackEvery || meta.NumPending == 0 {
			_ = last.Ack() // a lost ack only means a redelivery, which is skipped
			last, lastSeq, unacked = nil, 0, 0
		}
		if r.checkpointDue() {
			r.checkpoint(ctx, false)
		}
	}
}

// noteCaughtUp logs, once, when the models first reach the stream's last
// sequence as of start.
func (r *Runner) noteCaughtUp() {
	if r.caughtUpLogged || !r.CaughtUp() {
		return
	}
	r.caughtUpLogged = true
	r.opts.logger.Info().Str("durable", r.durable).Uint64("position", r.position.Load()).Uint64("start_seq", r.startSeq.Load()).
		Uint64("applied", r.applied.Load()).Dur("took", time.Since(r.runStart)).Msg("projection: caught up with the stream as of start")
}

// errCheckpointDue is next's way to say a checkpoint is due while no
// message arrives.
var errCheckpointDue = errors.New("projection: checkpoint due")

// next returns the next message; when the models hold events not yet in a
// checkpoint, or a checkpoint is in flight (it may fail, and then another
// is due), it waits at most until the checkpoint interval has passed.
func (r *Runner) next(ctx context.Context, it jetstream.MessagesContext) (jetstream.Msg, error) {
	if r.checkpointed() && len(r.saving) > 0 {
		return it.Next(jetstream.NextContext(ctx))
	}
	wait, cancel := context.WithDeadline(ctx, r.checkpointDeadline())
	defer cancel()
	m, err := it.Next(jetstream.NextContext(wait))
	if err != nil && ctx.Err() == nil && wait.Err() != nil {
		return nil, errCheckpointDue
	}
	return m, err
}

// recreate deletes the durable if it exists and creates it again, to
// deliver from the runner's position + 1.
func (r *Runner) recreate(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	err := r.js.DeleteConsumer(ctx, r.stream, r.durable)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	cfg := jetstream.ConsumerConfig{
		Durable:           r.durable,
		Description:       "capacityd read model (in memory; rebuilt on start from its checkpoint and the stream after it)",
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckAllPolicy,
		AckWait:           r.opts.ackWait,
		MaxDeliver:        -1,
		MaxAckPending:     r.opts.maxAckPending,
		MaxRequestBatch:   r.opts.batch,
		InactiveThreshold: r.opts.inactiveThreshold,
	}
	if pos := r.position.Load(); pos > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = pos + 1
	}
	return r.js.CreateConsumer(ctx, r.stream, cfg)
}

// decode turns a message (one event, or a capacity.CommitType message of
// several) into an Event with streams.Decode, the store's own decoder; a
// message that does not decode is logged, counted and returned as poison
// (nil Events).
func (r *Runner) decode(m jetstream.Msg, meta *jetstream.MsgMetadata) Event {
	seq := meta.Sequence.Stream
	rec, err := streams.Decode(m.Subject(), seq, meta.Timestamp, m.Headers(), m.Data())
	var events []capacity.Event
	if err == nil {
		events, err = rec.Events()
	}
	if err != nil {
		n := r.poison.Add(1)
		r.opts.logger.Error().Err(err).Str("durable", r.durable).Uint64("seq", seq).Str("subject", m.Subject()).
			Uint64("poison_total", n).Msg("projection: skipping undecodable message")
		return Event{Pool: rec.Pool, Seq: seq}
	}
	r.applied.Add(uint64(len(events)))
	return Event{Pool: rec.Pool, Seq: seq, Events: events, Traceparent: rec.Header[streams.HeaderTraceparent]}
}

// handle calls the handler until it succeeds or ctx ends, keeping the
// message alive meanwhile.
func (r *Runner) handle(ctx context.Context, m jetstream.Msg, ev Event) error {
	if ev.Traceparent != "" {
		var span trace.Span
		ctx, span = otel.Tracer("github.com/capacityd/capacityd/streams/projection").Start(
			streams.TraceContext(ctx, map[string]string{streams.HeaderTraceparent: ev.Traceparent}), "capacity.project",
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("capacity.pool", ev.Pool), attribute.Int64("capacity.seq", int64(ev.Seq)), attribute.String("capacity.durable", r.durable)))
		defer span.End()
	}
	backoff := 10 * time.Millisecond
	for {
		err := r.handler(ctx, ev)
		if err == nil {
			return nil
		}
		n := r.retries.Add(1)
		r.opts.logger.Warn().Err(err).Str("durable", r.durable).Uint64("seq", ev.Seq).Uint64("retries_total", n).
			Dur("backoff", backoff).Msg("projection: handler failed, retrying")
		_ = m.InProgress()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// advance moves the position to seq (never back) and wakes waiters.
func (r *Runner) advance(seq uint64) {
	for {
		cur := r.position.Load()
		if seq <= cur {
			return
		}
		if r.position.CompareAndSwap(cur, seq) {
			break
		}
	}
	if r.waiters.Load() > 0 {
		r.mu.Lock()
		if r.wake != nil {
			close(r.wake)
			r.wake = nil
		}
		r.mu.Unlock()
	}
}

// WaitFor returns nil once the position is at least position (the handler
// has applied everything up to it), or ctx's error if ctx ends first.
func (r *Runner) WaitFor(ctx context.Context, position uint64) error {
	if r.position.Load() >= position {
		return nil
	}
	r.waiters.Add(1)
	defer r.waiters.Add(-1)
	for {
		r.mu.Lock()
		if r.wake == nil {
			r.wake = make(chan struct{})
		}
		wake := r.wake
		r.mu.Unlock()
		if r.position.Load() >= position {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
