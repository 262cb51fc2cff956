package pools

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"go.opentelemetry.io/otel/trace"
)

// Service runs one entity per pool in this process and routes commands to
// them. It is safe for concurrent use.
type Service struct {
	store capacity.EventStore
	snaps capacity.SnapshotStore
	opts  Options

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per running entity, plus the snapshot writer

	mu       sync.Mutex
	entities map[string]*entity
	peak     int // most entities since the map was last made (a Go map never shrinks)
	closed   bool

	drainers  drainers
	snapshots chan snapshot
	stats     counters
	timers    *sweepTimers // every loaded entity's sweep

	committer     *committer    // nil: each pool appends on its own
	stopCommitter chan struct{} // closed once every entity has stopped
	stopOnce      sync.Once     // Close may be called more than once
	// bookings, without a committer for every commit, appends the
	// bookings' multi-pool units: the ones waiting together share one
	// atomic batch (and its fixed cost) instead of one batch each.
	bookings *committer

	known    knownBookings      // items of bookings written here
	expiries chan bookingExpiry // lapsed bookings to expire in all their pools
	expiryMu sync.Mutex
	expiring map[string]bool // booking ids queued on expiries
}

// Result is what a command did: the pool after it, the reservation it
// concerned (if any), and whether anything was written.
type Result struct {
	Pool        capacity.PoolView
	Reservation *capacity.Reservation
	// Written is true when the command appended events; false for an
	// idempotent repeat or a read.
	Written bool
}

// New starts a service over the given stores. Close stops it.
func New(store capacity.EventStore, snaps capacity.SnapshotStore, opts Options) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		store: store, snaps: snaps, opts: opts.withDefaults(),
		ctx: ctx, cancel: cancel,
		entities:  make(map[string]*entity),
		snapshots: make(chan snapshot, 256),
		expiries:  make(chan bookingExpiry, 1024),
		expiring:  make(map[string]bool),
	}
	s.drainers = drainers{ctx: ctx, wg: &s.wg, idle: make(chan *entity)}
	s.timers = newSweepTimers(func(e *entity) { s.post(e, &request{cmd: capacity.Expire{}}) })
	s.wg.Add(3)
	go s.writeSnapshots()
	go s.evictIdle()
	go s.expireLapsedBookings()
	s.stopCommitter = make(chan struct{})
	if s.opts.BatchAcrossPools {
		s.committer = newCommitter(store, s.opts.MinBatchCommits, s.opts.MaxBatchCommits, s.opts.AppendTimeout, &s.stats)
		go s.committer.run(s.stopCommitter)
	} else {
		// A booking is an atomic batch whatever waits beside it; the
		// batch's cost is nearly all fixed, so every booking waiting goes
		// in the next one (minimum 1). Their pools are disjoint: a booking
		// holds each of its pools until its append is done.
		s.bookings = newCommitter(store, 1, s.opts.MaxBatchCommits, s.opts.AppendTimeout, &s.stats)
		go s.bookings.run(s.stopCommitter)
	}
	return s
}

// appendCommit stores one pool's commit: through the committer, together
// with whatever other pools have ready, or on its own.
func (s *Service) appendCommit(ctx context.Context, pool string, expectedSeq uint64, events []capacity.Event) (uint64, error) {
	if s.committer == nil {
		return s.store.Append(ctx, pool, expectedSeq, events)
	}
	seqs, err := s.committer.append(ctx, capacity.Commit{Pool: pool, ExpectedSeq: expectedSeq, Events: events, Header: traceHeader(ctx)})
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

// Close stops the service. Commands not yet taken by their pool's writer are
// answered EUNAVAILABLE "shutting down" (nothing of them was written); a
// batch already being appended finishes its append (bounded by
// AppendTimeout) and its callers get the real outcome. Close returns once
// every entity has stopped and the snapshots already queued are written.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.timers.stop()
	// Entities and booking coordinators wait on the committer for their
	// last appends: it stops only after them.
	s.stopOnce.Do(func() { close(s.stopCommitter) })
	for _, c := range []*committer{s.committer, s.bookings} {
		if c != nil {
			<-c.done
		}
	}
}

// Execute carries out cmd on the pool and returns the result once its events
// are stored (or it was refused, or it changed nothing). An error is a
// *capacity.Error for refusals; EUNAVAILABLE when the outcome is unknown.
func (s *Service) Execute(ctx context.Context, pool string, cmd capacity.Command) (Result, error) {
	if !capacity.ValidID(pool) {
		return Result{}, capacity.Errorf(capacity.EINVALID, "pool id must be 1-%d characters of [A-Za-z0-9_-]", capacity.MaxIDLength)
	}
	if err := cmd.Validate(); err != nil {
		return Result{}, err
	}
	if d, ok := cmd.(capacity.DefinePool); ok && d.Pool != pool {
		return Result{}, capacity.Errorf(capacity.EINVALID, "pool id in body and path differ")
	}
	return s.do(ctx, pool, &request{cmd: cmd, reservationID: reservationOf(cmd), span: trace.SpanContextFromContext(ctx)})
}

// Pool returns the pool's current view, after every write queued before it.
func (s *Service) Pool(ctx context.Context, pool string) (capacity.PoolView, error) {
	res, err := s.Execute(ctx, pool, capacity.Read{})
	if err == nil && res.Pool.ID == "" {
		err = capacity.Errorf(capacity.ENOTFOUND, "pool not found")
	}
	return res.Pool, err
}

// Reservation returns one reservation of a pool, after every write queued
// before it.
func (s *Service) Reservation(ctx context.Context, pool, id string) (capacity.Reservation, error) {
	if !capacity.ValidID(id) {
		return capacity.Reservation{}, capacity.Errorf(capacity.EINVALID, "reservation id must be 1-%d characters of [A-Za-z0-9_-]", capacity.MaxIDLength)
	}
	res, err := s.do(ctx, pool, &request{cmd: capacity.Read{}, reservationID: id})
	switch {
	case err != nil:
		return capacity.Reservation{}, err
	case res.Pool.ID == "":
		return capacity.Reservation{}, capacity.Errorf(capacity.ENOTFOUND, "pool not found")
	case res.Reservation == nil:
		return capacity.Reservation{}, capacity.Errorf(capacity.ENOTFOUND, "reservation not found")
	}
	return *res.Reservation, nil
}

func (s *Service) do(ctx context.Context, pool string, r *request) (Result, error) {
	if !capacity.ValidID(pool) {
		return Result{}, capacity.Errorf(capacity.EINVALID, "pool id must be 1-%d characters of [A-Za-z0-9_-]", capacity.MaxIDLength)
	}
	r.reply = make(chan response, 1)
	if err := s.submit(pool, r); err != nil {
		return Result{}, err
	}
	// A queued command is always answered: a goroutine drains a queue
	// whenever it is not empty, and answers what it cannot decide at
	// shutdown. The timeout only bounds a store that does not answer. A
	// plain timer, not a context.WithTimeout: that would also register a
	// child with the caller's context, per command.
	timeout := time.NewTimer(s.opts.RequestTimeout)
	defer timeout.Stop()
	select {
	case resp := <-r.reply:
		return resp.result, resp.err
	case <-ctx.Done():
		// The command is queued and may still be written: its outcome is unknown.
		return Result{}, capacity.Errorf(capacity.EUNAVAILABLE, "outcome unknown: %v", ctx.Err())
	case <-timeout.C:
		return Result{}, capacity.Errorf(capacity.EUNAVAILABLE, "outcome unknown: %v", context.DeadlineExceeded)
	}
}

var errShuttingDown = capacity.Errorf(capacity.EUNAVAILABLE, "service is shutting down")

// submit queues r on the pool's entity, loading an entity if there is none.
func (s *Service) submit(pool string, r *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errShuttingDown
	}
	e := s.entities[pool]
	if e == nil {
		e = &entity{svc: s, id: pool}
		s.entities[pool] = e
		s.peak = max(s.peak, len(s.entities))
	}
	return e.enqueue(r)
}

// post queues r on e if e is still the pool's entity (a timer of an evicted
// entity posts nothing).
func (s *Service) post(e *entity, r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.entities[e.id] != e {
		return
	}
	e.enqueue(r) // a full queue drops the sweep: the next batch re-arms it
}

// evictIf removes e from the service if ok holds, checked under both locks
// (so no command can be queued on e in between).
func (s *Service) evictIf(e *entity, ok func() bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.evicted || !ok() {
		return false
	}
	e.evicted = true
	e.stopSweep()
	delete(s.entities, e.id)
	return true
}

// evictIdle runs until the service stops, removing every IdleTimeout/2 the
// entities idle for IdleTimeout, live holds or not. A pool evicted with
// live holds loses its sweep timer: its holds are free at their deadline
// anyway (decisions take the time), and the Expired events are written by
// SweepLapsed, which asks the read models, as for any pool not loaded. Its
// next command reloads it, from the snapshot handed over here when many
// events went by since the last one.
func (s *Service) evictIdle() {
	defer s.wg.Done()
	every := max(s.opts.IdleTimeout/2, time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		s.mu.Lock()
		for id, e := range s.entities {
			e.mu.Lock()
			// Not running: the pool's state is no goroutine's now.
			if !e.running && now.Sub(e.lastUsed) >= s.opts.IdleTimeout {
				if e.pool != nil && int(e.sinceSnapshot) >= evictSnapshotAfter {
					// Nothing touches the state after this: no copy. If
					// the writer is behind, the reload replays the tail.
					e.offerSnapshot(e.pool)
				}
				e.evicted = true
				e.stopSweep()
				delete(s.entities, id)
			}
			e.mu.Unlock()
		}
		if s.peak > 1024 && len(s.entities) < s.peak/4 {
			// Copied into a map its size: the buckets of a million pools
			// loaded once would otherwise stay for good.
			// (maps.Clone would keep the old one's size.)
			smaller := make(map[string]*entity, len(s.entities))
			for id, e := range s.entities {
				smaller[id] = e
			}
			s.entities, s.peak = smaller, len(smaller)
		}
		s.mu.Unlock()
	}
}

// evictSnapshotAfter is the tail, in events since the last snapshot, above
// which an evicted pool's state is snapshotted on its way out: below it a
// reload replays the tail in well under a millisecond, and a snapshot each
// would cost a write for every pool evicted.
const evictSnapshotAfter = 64

// Loaded returns how many pools are in memory.
func (s *Service) Loaded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entities)
}

// Stats are running totals since the service started.
type Stats struct {
	Appends        uint64 // successful appends
	Events         uint64 // events appended
	Commands       uint64 // commands answered
	Conflicts      uint64 // appends refused because another writer wrote first
	Loads          uint64 // pools loaded (snapshot + tail, or full replay)
	Replays        uint64 // loads that found no usable snapshot
	Snapshots      uint64 // snapshots written
	HoldsAccepted  uint64 // new holds written (idempotent repeats are not counted)
	HoldsRejected  uint64 // refused for capacity, closed pool or conflict
	AppendFailures uint64 // appends that failed for other reasons
	Batches        uint64 // cross-pool batches of more than one commit
	BatchedCommits uint64 // pool commits carried by those batches
}

type counters struct {
	appends, events, commands, conflicts, loads, replays, snapshots atomic.Uint64
	holdsAccepted, holdsRejected, appendFailures                    atomic.Uint64
	batches, batchedCommits                                         atomic.Uint64
}

// Stats returns the running totals.
func (s *Service) Stats() Stats {
	c := &s.stats
	return Stats{
		Appends: c.appends.Load(), Events: c.events.Load(), Commands: c.commands.Load(),
		Conflicts: c.conflicts.Load(), Loads: c.loads.Load(), Replays: c.replays.Load(),
		Snapshots: c.snapshots.Load(), HoldsAccepted: c.holdsAccepted.Load(),
		HoldsRejected: c.holdsRejected.Load(), AppendFailures: c.appendFailures.Load(),
		Batches: c.batches.Load(), BatchedCommits: c.batchedCommits.Load(),
	}
}

type snapshot struct {
	pool  string
	seq   uint64
	state *capacity.Pool // a copy, no longer touched by its entity
}

// writeSnapshots stores snapshots off the write path. On shutdown it drains
// what is queued with a short deadline.
func (s *Service) writeSnapshots() {
	defer s.wg.Done()
	put := func(ctx context.Context, snap snapshot) {
		data, err := snap.state.MarshalSnapshot()
		if err != nil {
			s.opts.Logger.Error().Err(err).Str("pool", snap.pool).Msg("snapshot encode failed")
			return
		}
		if err := s.snaps.Put(ctx, snap.pool, snap.seq, data); err != nil {
			s.opts.Logger.Warn().Err(err).Str("pool", snap.pool).Uint64("seq", snap.seq).Msg("snapshot not written")
			return
		}
		s.stats.snapshots.Add(1)
	}
	for {
		select {
		case snap := <-s.snapshots:
			put(s.ctx, snap)
		case <-s.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			for {
				select {
				case snap := <-s.snapshots:
					put(ctx, snap)
				default:
					return
				}
			}
		}
	}
}

func reservationOf(cmd capacity.Command) string {
	switch c := cmd.(type) {
	case capacity.Hold:
		return c.ReservationID
	case capacity.Confirm:
		return c.ReservationID
	case capacity.Release:
		return c.ReservationID
	case capacity.Extend:
		return c.ReservationID
	}
	return ""
}
