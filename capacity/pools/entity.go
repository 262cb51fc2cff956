package pools

import (
	"context"
	"errors"
	"sync/atomic"
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
}

// fail answers the request with err, if anyone waits for an answer.
func (r *request) fail(err error) {
	if r.reply != nil {
		r.reply <- response{err: err}
	}
}

type response struct {
	result Result
	err    error
}

// entity is the single writer of one pool in this process. Only its run
// goroutine touches pool.
type entity struct {
	svc     *Service
	id      string
	queue   chan *request
	done    chan struct{} // closed when run returns
	pending atomic.Int64  // callers between acquire and their command being taken off the queue

	pool          *capacity.Pool // nil: not loaded, or dropped after a failed append
	sinceSnapshot int            // events since the last snapshot handed to the writer
}

func newEntity(s *Service, id string) *entity {
	return &entity{svc: s, id: id, queue: make(chan *request, s.opts.QueueSize), done: make(chan struct{})}
}

// run takes commands off the queue in batches until the service stops or the
// pool has been idle long enough to evict.
func (e *entity) run() {
	defer e.svc.wg.Done()
	defer close(e.done)
	opts := e.svc.opts
	idle := time.NewTimer(opts.IdleTimeout)
	defer idle.Stop()
	sweep := time.NewTimer(time.Hour)
	sweep.Stop()
	defer sweep.Stop()

	batch := make([]*request, 0, opts.MaxBatch)
	for {
		select {
		case <-e.svc.ctx.Done():
			e.failQueued()
			return
		case r := <-e.queue:
			if e.svc.ctx.Err() != nil {
				// Shutting down: select picked the queue over Done at
				// random. Nothing more is decided.
				e.pending.Add(-1)
				r.fail(errShuttingDown)
				e.failQueued()
				return
			}
			batch = append(batch[:0], r)
		drain:
			for len(batch) < opts.MaxBatch {
				select {
				case r := <-e.queue:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			e.pending.Add(-int64(len(batch)))
			e.process(batch)
			clear(batch)
		case <-sweep.C:
			if e.svc.ctx.Err() != nil {
				continue // Done is ready too: the next round stops
			}
			e.process([]*request{{cmd: capacity.Expire{}}})
		case <-idle.C:
			if !e.hasLiveHolds() && e.tryEvict() {
				return
			}
			idle.Reset(opts.IdleTimeout)
			continue
		}
		// A pool that does not exist is not kept in memory: requests for
		// random ids must not pile up entities.
		if e.pool != nil && !e.pool.Defined() && e.tryEvict() {
			return
		}
		idle.Reset(opts.IdleTimeout)
		e.scheduleSweep(sweep)
	}
}

// tryEvict removes the entity from the service if no caller is about to
// queue a command, answering what was queued before the decision. It
// reports whether the entity must stop.
func (e *entity) tryEvict() bool {
	if !e.svc.evict(e) {
		return false
	}
	// Nobody can reach the queue any more, but a caller may have queued just
	// before eviction was decided.
	for len(e.queue) > 0 {
		e.process([]*request{<-e.queue})
	}
	return true
}

func (e *entity) hasLiveHolds() bool {
	if e.pool == nil {
		return false
	}
	_, ok := e.pool.NextDeadline()
	return ok
}

// scheduleSweep arms the sweep timer for the pool's next hold deadline.
func (e *entity) scheduleSweep(sweep *time.Timer) {
	sweep.Stop()
	if e.pool == nil {
		return
	}
	if next, ok := e.pool.NextDeadline(); ok {
		sweep.Reset(max(0, next.Sub(e.svc.opts.Now())) + e.svc.opts.SweepGrace)
	}
}

// failQueued answers every queued command with EUNAVAILABLE on shutdown.
func (e *entity) failQueued() {
	for {
		select {
		case r := <-e.queue:
			e.pending.Add(-1)
			r.fail(errShuttingDown)
		default:
			return
		}
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
	for attempt := 1; ; attempt++ {
		if err = e.ensureLoaded(); err != nil {
			break
		}
		now := opts.Now()
		events = events[:0]
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
	e.answer(batch, decisions, err)
}

// answer replies to every request of a batch; batchErr, when set, is the
// reason nothing of the batch is known to be stored.
func (e *entity) answer(batch []*request, decisions []decision, batchErr error) {
	svc, now := e.svc, e.svc.opts.Now()
	var view capacity.PoolView
	if e.pool != nil {
		now = e.pool.TimeAt(now)
		view = e.pool.ViewAt(now)
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
			if res := e.pool.Reservations[r.reservationID]; r.reservationID != "" && res != nil {
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
	e.sinceSnapshot += len(events)
	// A snapshot costs time in proportion to the pool's reservations, so a
	// pool with many waits longer between them: amortised O(1) an event.
	if e.sinceSnapshot >= max(e.svc.opts.SnapshotEvery, len(e.pool.Reservations)) {
		e.snapshot()
	}
}

func (e *entity) snapshot() {
	data, err := e.pool.MarshalSnapshot()
	if err != nil {
		e.svc.opts.Logger.Error().Err(err).Str("pool", e.id).Msg("snapshot encode failed")
		return
	}
	select {
	case e.svc.snapshots <- snapshot{pool: e.id, seq: e.pool.Version, data: data}:
		e.sinceSnapshot = 0
	default: // the writer is behind; try again after the next append
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
	e.sinceSnapshot = int(pool.Version - snapSeq)
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
