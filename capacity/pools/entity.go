package pools

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"go.opentelemetry.io/otel/trace"
)

// request is one command waiting for a pool's writer.
type request struct {
	cmd           capacity.Command
	reservationID string            // the reservation to return, if any
	span          trace.SpanContext // the caller's, carried into the append (trace.go)
	reply         chan response
	part          *part // set: one pool's part of a booking (booking.go)
}

// fail answers the request with err, if anyone waits for an answer.
func (r *request) fail(err error) {
	if r.reply != nil {
		r.reply <- response{err: err}
	}
}

type response struct {
	result   Result
	err      error
	prepared *prepared // a booking part's decision
}

// entity is the single writer of one pool in this process.
//
// It has no goroutine of its own while nothing is queued: the first command
// queued on an idle entity starts one, which takes batches off the queue
// until it is empty and then ends. A loaded pool that nobody writes costs
// its state and a place in the service's sweep timers, not a goroutine and
// its stack, nor a timer of its own. Only the goroutine
// draining the queue touches pool and sinceSnapshot; one hands them to the
// next through mu (running is set and cleared under it).
type entity struct {
	svc *Service
	id  string

	mu       sync.Mutex
	queue    []*request // commands waiting, in order
	running  bool       // a goroutine is draining queue; true whenever queue is not empty
	evicted  bool       // removed from the service; nothing more is queued
	lastUsed time.Time  // when the queue last ran empty

	pool          *capacity.Pool // nil: not loaded, or dropped after a failed append
	sinceSnapshot int32          // events since the last snapshot handed to the writer
	// sweepIdx and sweepAt place the entity in the service's sweep timers
	// (timers.go), which queue an Expire at its next hold deadline; guarded
	// by their mutex. With sinceSnapshot as an int32 the entity is 112
	// bytes, a size class.
	sweepIdx int32
	sweepAt  int64
}

// enqueue queues r and makes sure a goroutine drains the queue. The caller
// holds the service's mu (so the service is not closed and e not evicted
// under it, and wg.Add never races Close's Wait).
func (e *entity) enqueue(r *request) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.queue) >= e.svc.opts.QueueSize {
		return capacity.Errorf(capacity.EUNAVAILABLE, "pool %s is busy (%d commands queued), try again", e.id, len(e.queue))
	}
	e.queue = append(e.queue, r)
	if !e.running {
		e.running = true
		e.svc.drainers.start(e)
	}
	return nil
}

// drain takes commands off the queue in batches until it is empty, or the
// service stops (then it answers what is left: nothing of it was decided).
func (e *entity) drain() {
	opts := e.svc.opts
	for {
		e.mu.Lock()
		if e.svc.ctx.Err() != nil {
			for _, r := range e.queue {
				r.fail(errShuttingDown)
			}
			e.queue, e.running = nil, false
			e.stopSweep()
			e.mu.Unlock()
			return
		}
		if len(e.queue) == 0 {
			e.running = false
			e.lastUsed = time.Now() // idleness is wall time, not the pool's clock
			e.mu.Unlock()
			return
		}
		n := min(len(e.queue), opts.MaxBatch)
		batch := e.queue[:n:n] // appends to the rest never touch it
		e.queue = e.queue[n:]
		if len(e.queue) == 0 {
			e.queue = nil
		}
		e.mu.Unlock()

		e.processAll(batch)
		// A pool that does not exist is not kept in memory: requests for
		// random ids must not pile up entities.
		if e.pool != nil && !e.pool.Defined() {
			e.svc.evictIf(e, func() bool { return len(e.queue) == 0 })
		}
		e.scheduleSweep()
	}
}

// scheduleSweep arms the sweep timer for the pool's next hold deadline: it
// queues an Expire command then.
func (e *entity) scheduleSweep() {
	var next time.Time
	if e.pool != nil {
		next, _ = e.pool.NextDeadline()
	}
	if next.IsZero() {
		e.stopSweep()
		return
	}
	// Re-armed after every batch, against the clock as it is now.
	wait := max(0, next.Sub(e.svc.opts.Now())) + e.svc.opts.SweepGrace
	e.svc.timers.schedule(e, wait)
}

func (e *entity) stopSweep() {
	e.svc.timers.cancel(e)
}

// processAll processes a batch taken off the queue: the commands up to a
// booking's part as one batch (decided, appended, answered), then the part
// (which holds the pool until the booking's verdict), then the rest.
func (e *entity) processAll(batch []*request) {
	start := 0
	for i, r := range batch {
		if r.part == nil {
			continue
		}
		if i > start {
			e.process(batch[start:i])
		}
		start = i + 1
		if e.svc.ctx.Err() != nil {
			for _, r := range batch[i:] {
				r.fail(errShuttingDown)
			}
			return
		}
		e.prepare(r)
	}
	if start < len(batch) {
		e.process(batch[start:])
	}
}

// decision is what deciding one request in a batch gave.
type decision struct {
	err    error
	events int // how many events this request added to the batch
}

// process decides a batch against the pool, appends all its events in one
// append and answers every request after the store has acknowledged it.
// When another writer got there first it reloads and decides again.
func (e *entity) process(batch []*request) {
	svc, opts := e.svc, e.svc.opts
	decisions := make([]decision, len(batch))
	var events []capacity.Event
	var err error
	// decidedAt is the clock reading the batch was decided at: its answers
	// show the pool at that instant, never at a later reading (see answer).
	var decidedAt time.Time
	for attempt := 1; ; attempt++ {
		if err = e.ensureLoaded(); err != nil {
			break
		}
		// Never past an unrecorded lapse of a booking's part: this batch
		// could not record it (capacity.Pool.SingleTimeAt).
		now := e.pool.SingleTimeAt(opts.Now())
		decidedAt = now
		events = events[:0]
		// Every lapse the batch's decisions may rely on is recorded in the
		// batch's own commit, first. A lapse only decided on (a confirm
		// refused as expired, a read showing it expired, units given to
		// another hold) would otherwise be undone by a writer whose clock
		// is behind: with the lapse on record, the pool's time (and so
		// every later decision, whatever its clock) is past the deadline.
		lapses, _ := capacity.Decide(e.pool, capacity.Expire{}, now)
		lapses = lapses[:min(len(lapses), opts.MaxEvents/2)] // the rest in the next batch
		for _, ev := range lapses {
			e.pool.Evolve(ev, 0)
		}
		events = append(events, lapses...)
		for i, r := range batch {
			evs, derr := capacity.Decide(e.pool, r.cmd, now)
			if _, ok := r.cmd.(capacity.Expire); ok && len(evs) > opts.MaxEvents-len(events) {
				evs = evs[:opts.MaxEvents-len(events)] // the rest on the next sweep
			}
			if derr == nil && len(events)+len(evs) > opts.MaxEvents {
				derr = capacity.Errorf(capacity.EUNAVAILABLE, "batch full, try again")
			}
			decisions[i] = decision{err: derr, events: len(evs)}
			if derr != nil {
				continue
			}
			for _, ev := range evs {
				e.pool.Evolve(ev, 0)
			}
			events = append(events, evs...)
		}
		if len(events) == 0 {
			// Nothing to append, so no expected-sequence check will prove
			// the pool was current: reads, idempotent repeats and refusals
			// ("insufficient capacity", "not found") would otherwise answer
			// from a state another instance has moved on from. Ask the
			// store for the pool's last sequence; if it moved, reload and
			// decide again.
			if !opts.NoTailCheck && attempt == 1 {
				if moved, terr := e.tailMoved(); terr != nil {
					err = terr
					break
				} else if moved {
					e.pool = nil
					continue
				}
			}
			break
		}
		start := time.Now()
		// Shutdown does not cancel an append: its callers get its real
		// outcome, within AppendTimeout, instead of "unknown".
		ctx, cancel := context.WithTimeout(context.WithoutCancel(svc.ctx), opts.AppendTimeout)
		expected := e.pool.Version
		var lastSeq uint64
		ctx, span := startAppend(ctx, e.id, batch, decisions)
		lastSeq, err = svc.appendCommit(ctx, e.id, expected, events)
		endAppend(span, lastSeq, err)
		cancel()
		if err == nil {
			e.committed(events, lastSeq)
			svc.stats.appends.Add(1)
			svc.stats.events.Add(uint64(len(events)))
			if opts.OnAppend != nil {
				opts.OnAppend(len(batch), len(events), time.Since(start))
			}
			break
		}
		// The pool was evolved with events that are not (or not known to be)
		// stored: drop it, and load it again before deciding anything.
		e.pool = nil
		if errors.Is(err, capacity.ErrStaleSequence) && attempt < opts.MaxAttempts {
			svc.stats.conflicts.Add(1)
			opts.Logger.Debug().Str("pool", e.id).Int("attempt", attempt).Msg("append conflict, reloading")
			continue
		}
		svc.stats.appendFailures.Add(1)
		opts.Logger.Error().Err(err).Str("pool", e.id).Int("events", len(events)).Msg("append failed")
		if errors.Is(err, capacity.ErrStaleSequence) {
			err = capacity.Errorf(capacity.EUNAVAILABLE, "pool %s is too contended, try again", e.id)
		} else {
			err = capacity.Errorf(capacity.EUNAVAILABLE, "outcome unknown: event store: %v", err)
		}
		break
	}
	e.answer(batch, decisions, decidedAt, err)
	if e.pool != nil && slices.ContainsFunc(batch, func(r *request) bool { _, ok := r.cmd.(capacity.Expire); return ok }) {
		e.expireBookings()
	}
}

// answer replies to every request of a batch decided at decidedAt; batchErr,
// when set, is the reason nothing of the batch is known to be stored.
//
// The answers show the pool at the batch's decision time, not at a fresh
// clock reading: the clock may have moved on (or jumped) while the append or
// the tail check ran, and a view at a later time could show a hold lapsed
// that no decision saw lapsed, so no Expired event records it. A writer
// whose clock is behind would then show it live again, or confirm it.
func (e *entity) answer(batch []*request, decisions []decision, decidedAt time.Time, batchErr error) {
	svc := e.svc
	var view capacity.PoolView
	var now time.Time
	if e.pool != nil {
		now = e.pool.TimeAt(decidedAt)
		view = e.pool.ViewAt(now)
		view.HomeRegion = svc.opts.Region
	}
	for i, r := range batch {
		d := decisions[i]
		resp := response{err: d.err}
		if batchErr != nil {
			resp.err = batchErr
		}
		if _, ok := r.cmd.(capacity.Hold); ok && batchErr == nil {
			switch {
			case d.err == nil && d.events > 0:
				svc.stats.holdsAccepted.Add(1)
			case d.err != nil:
				svc.stats.holdsRejected.Add(1)
			}
		}
		if resp.err == nil {
			resp.result = Result{Pool: view, Written: d.events > 0}
			if res := e.pool.Reservation(r.reservationID); r.reservationID != "" && res != nil {
				c := *res
				c.Status = c.StatusAt(now)
				resp.result.Reservation = &c
			}
		}
		if r.reply != nil {
			svc.stats.commands.Add(1)
			r.reply <- resp
		}
	}
}

// committed stamps the appended events with the sequence of their commit
// and hands a snapshot to the writer when enough events have gone by.
func (e *entity) committed(events []capacity.Event, seq uint64) {
	for _, ev := range events {
		e.pool.Stamp(ev, seq)
	}
	e.sinceSnapshot = int32(min(int64(e.sinceSnapshot)+int64(len(events)), math.MaxInt32))
	if int(e.sinceSnapshot) >= snapshotInterval(e.svc.opts.SnapshotEvery, len(e.pool.Reservations)) {
		e.snapshot()
	}
}

// maxSnapshotTail bounds the events a load replays after a pool's
// snapshot, whatever its size: 100-150 ms of replay.
const maxSnapshotTail = 50_000

// snapshotInterval is how many events a pool with reservations kept whole
// lets go by between snapshots: every, or half its reservations if more,
// but at most maxSnapshotTail.
//
// A snapshot costs in proportion to the reservations kept whole: the copy
// on the writer's goroutine (Pool.Clone, a map of pointers), the encoding
// on the snapshot writer's, and a write of ~50 bytes each to the bucket.
// For 100,000 holds that is ~6 ms, ~40 ms of CPU and 5 MB, and the appends
// of the ~100 ms around it are slowed (BenchmarkHotPoolOpenLoop, whose
// server fsyncs the write: p99 14-109 ms with it, 7-50 ms with the write
// left out, three runs each; a connection of its own for the bucket did
// not help). Waiting half as many events as reservations keeps that
// amortised O(1) an event and makes those windows a quarter as frequent as
// with an eighth, as before (one every 3 s at 4,000 holds a second), so
// fewer of them reach into a hot pool's 99th percentile. A load replays at
// most that tail, 2-3 µs an event from group commits
// (capacity.BenchmarkSnapshotLargePool: 17,280 whole reservations, the
// snapshot decoded and 8,640 events evolved in ~70 ms).
func snapshotInterval(every, reservations int) int {
	return max(every, min(reservations/2, maxSnapshotTail))
}

func (e *entity) snapshot() {
	// A copy of the state goes to the snapshot writer, which encodes it off
	// this goroutine: copying costs a fraction of encoding. If the writer
	// is behind, the next append tries again, and no copy is made for
	// nothing (a hot pool's is milliseconds).
	if len(e.svc.snapshots) == cap(e.svc.snapshots) {
		return
	}
	if e.offerSnapshot(e.pool.Clone()) {
		e.sinceSnapshot = 0
	}
}

// offerSnapshot hands state to the snapshot writer unless it is behind
// (its queue full), and reports whether it did. Nothing may change state
// after it is handed over.
func (e *entity) offerSnapshot(state *capacity.Pool) bool {
	select {
	case e.svc.snapshots <- snapshot{pool: e.id, seq: state.Version, state: state}:
		return true
	default:
		return false
	}
}

// tailMoved reports whether another writer appended to the pool since this
// entity last saw it.
func (e *entity) tailMoved() (bool, error) {
	ctx, cancel := context.WithTimeout(e.svc.ctx, e.svc.opts.AppendTimeout)
	defer cancel()
	last, err := e.svc.store.LastSeq(ctx, e.id)
	if err != nil {
		return false, capacity.Errorf(capacity.EUNAVAILABLE, "event store: %v", err)
	}
	return last != e.pool.Version, nil
}

// ensureLoaded loads the pool from its snapshot and the events after it,
// falling back to a full replay when the snapshot is missing or unusable.
func (e *entity) ensureLoaded() error {
	if e.pool != nil {
		return nil
	}
	svc, log := e.svc, e.svc.opts.Logger
	ctx, cancel := context.WithTimeout(svc.ctx, svc.opts.AppendTimeout)
	defer cancel()
	svc.stats.loads.Add(1)

	pool := e.fromSnapshot(ctx)
	if pool != nil {
		// A snapshot must not claim more history than the stream has (a
		// stream recreated under an old bucket).
		last, err := svc.store.LastSeq(ctx, e.id)
		if err != nil {
			return capacity.Errorf(capacity.EUNAVAILABLE, "loading pool %s: %v", e.id, err)
		}
		if last < pool.Version {
			log.Warn().Str("pool", e.id).Uint64("snapshot_seq", pool.Version).Uint64("last_seq", last).Msg("snapshot ahead of stream, replaying")
			pool = nil
		}
	}
	if pool == nil {
		svc.stats.replays.Add(1)
		pool = &capacity.Pool{}
	}
	snapSeq := pool.Version
	for rec, err := range svc.store.Read(ctx, e.id, pool.Version) {
		if err != nil {
			return capacity.Errorf(capacity.EUNAVAILABLE, "loading pool %s: %v", e.id, err)
		}
		pool.Evolve(rec.Event, rec.Seq)
	}
	e.pool = pool
	e.sinceSnapshot = int32(min(pool.Version-snapSeq, math.MaxInt32))
	return nil
}

// fromSnapshot returns the pool from its snapshot, or nil when there is none
// or it cannot be used; a broken snapshot is logged, never trusted.
func (e *entity) fromSnapshot(ctx context.Context) *capacity.Pool {
	log := e.svc.opts.Logger
	seq, data, err := e.svc.snaps.Get(ctx, e.id)
	if errors.Is(err, capacity.ErrNoSnapshot) {
		return nil
	} else if err != nil {
		log.Warn().Err(err).Str("pool", e.id).Msg("snapshot unreadable, replaying")
		return nil
	}
	pool, err := capacity.UnmarshalSnapshot(data)
	if err != nil || pool.Version != seq || pool.ID != e.id {
		log.Warn().Err(err).Str("pool", e.id).Uint64("seq", seq).Msg("snapshot unusable, replaying")
		return nil
	}
	return pool
}
