package views

import (
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
	if !r.apply(seq, events, r.holdChanged) {
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
