package views

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/capacityd/capacityd/capacity"
)

// Models is the read side of one process: one folded copy of every pool,
// and the three models that index it (availability, reservations by id,
// the planner board). One Apply folds a commit once and updates every
// index; the models' queries read the shared pools under one lock.
//
// It is safe for one writer (the runner) and many readers.
type Models struct {
	mu       sync.RWMutex
	pools    map[string]*row
	position uint64
	// traceparent is that of the commit being applied, for the board
	// changes it publishes; guarded by mu.
	traceparent string

	// Availability lists pools and their figures; Reservations finds
	// reservations by id; Board aggregates pools per slot. All three read
	// the pools above.
	Availability *Availability
	Reservations *Reservations
	Board        *Board
}

// row is one pool as the read side holds it: the folded pool, shared by
// every model, and what each model indexes about it.
type row struct {
	fold

	// availability
	start     int64      // StartsAt in unix nanoseconds, the index key with the id
	indexed   bool       // whether the row is in Availability.byStart
	deadlines []deadline // live holds sorted by (at, id)
	gen       uint64     // bumped on every change, under the write lock
	memo      atomic.Pointer[lapseMemo]

	// board
	key     cellKey
	counted bool  // whether contrib is added to the cell at key
	contrib share // what the pool adds to its cell

	// fenced are sequences of commits removed from the stream, never
	// applied (Refold).
	fenced []uint64
	// indexedIDs counts the reservation ids the lookup index holds for
	// the pool (Figures).
	indexedIDs int
}

// New returns empty read models sharing one copy of each pool.
func New() *Models {
	m := &Models{pools: make(map[string]*row)}
	m.Availability = &Availability{m: m}
	m.Reservations = &Reservations{m: m, byID: make(map[string][]string)}
	m.Board = &Board{m: m, cells: make(map[cellKey]*Cell), subs: make(map[*boardSub]struct{})}
	return m
}

// Apply applies the events of one commit, stored at stream sequence seq on
// pool's subject, to the pool and every model. A seq at or below the last
// one applied to that pool is ignored, so a redelivered message never
// counts twice. Readers see the commit whole or not at all.
func (m *Models) Apply(pool string, seq uint64, events ...capacity.Event) {
	m.ApplyTraced(pool, seq, "", events...)
}

// ApplyTraced is Apply for a commit written under a trace: the board
// changes it publishes carry traceparent (projection.TracedModel).
func (m *Models) ApplyTraced(pool string, seq uint64, traceparent string, events ...capacity.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.traceparent = traceparent
	defer func() { m.traceparent = "" }()
	m.position = max(m.position, seq)
	r := m.pools[pool]
	if r == nil {
		r = &row{}
		m.pools[pool] = r
	}
	if len(r.fenced) > 0 && slices.Contains(r.fenced, seq) || !r.apply(seq, events, r.holdChanged) {
		return
	}
	r.gen++
	defined := false
	for _, e := range events {
		switch e := e.(type) {
		case capacity.PoolDefined:
			defined = true
		case capacity.Held:
			m.Reservations.index(pool, e.ReservationID)
		}
	}
	if defined {
		m.Availability.reindex(r)
	}
	m.Board.update(seq, r)
}

// Advance records that every event up to seq has been seen although seq
// itself held nothing to apply (an undecodable message).
func (m *Models) Advance(seq uint64) {
	m.mu.Lock()
	m.position = max(m.position, seq)
	m.mu.Unlock()
}

// Position returns the highest stream sequence applied.
func (m *Models) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.position
}

// holdChanged keeps the row's deadline index in step with one reservation.
func (r *row) holdChanged(id string, before, after holdState) {
	if before.held {
		r.removeDeadline(deadline{at: before.expiresAt, id: id})
	}
	if after.held {
		r.insertDeadline(deadline{at: after.expiresAt, id: id, quantity: after.quantity})
	}
}

// Commit is one commit of a pool's history: its stream sequence and its
// events.
type Commit struct {
	Seq    uint64
	Events []capacity.Event
}

// Refold replaces what the models hold of pool by a fold of history, the
// pool's commits still in the stream in order, and from then on ignores
// the sequences in fenced: commits removed from the stream (an incomplete
// atomic commit fenced at promotion) whose effects the models may have
// applied, or may still be handed by a consumer that fetched them before
// they were removed. Every model follows: availability's index and
// deadlines, the reservation index (the pool's ids as history has them),
// the board's cell, whose change is published. It takes the write lock
// once; a commit of the pool after history's last is applied as usual.
func (m *Models) Refold(pool string, history []Commit, fenced []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.pools[pool]; old != nil {
		if old.counted {
			m.Board.add(m.position, old.key, old.contrib, -1, true)
		}
		if old.indexed {
			if i, ok := m.Availability.findRow(old.start, old.pool.ID); ok {
				m.Availability.byStart = slices.Delete(m.Availability.byStart, i, i+1)
			}
		}
		for id, pools := range m.Reservations.byID {
			if i, ok := slices.BinarySearch(pools, pool); ok {
				if pools = slices.Delete(pools, i, i+1); len(pools) == 0 {
					delete(m.Reservations.byID, id)
				} else {
					m.Reservations.byID[id] = pools
				}
			}
		}
		fenced = slices.Concat(fenced, old.fenced) // never into the caller's array
	}
	r := &row{fenced: slices.Clone(fenced)}
	m.pools[pool] = r
	defined := false
	for _, c := range history {
		if slices.Contains(fenced, c.Seq) || !r.apply(c.Seq, c.Events, r.holdChanged) {
			continue
		}
		for _, e := range c.Events {
			switch e := e.(type) {
			case capacity.PoolDefined:
				defined = true
			case capacity.Held:
				m.Reservations.index(pool, e.ReservationID)
			}
		}
	}
	r.gen++
	if defined {
		m.Availability.reindex(r)
	}
	m.Board.update(m.position, r)
}
