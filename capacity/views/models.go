package views

import (
	"slices"
	"strings"
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
	mu    sync.RWMutex
	pools map[string]*row
	// held is the pools with a live hold, so a sweep (LapsedPools) looks
	// at those, not at a million idle ones under the read lock.
	held map[string]*row
	// names holds one copy of each region and kind name: a million pools
	// share a handful, which each decoded event spells out afresh.
	names    map[string]string
	position uint64
	// traceparent is that of the commit being applied, for the board
	// changes it publishes; guarded by mu.
	traceparent string
	// broken is the first pool from a checkpoint that did not decode when
	// an event touched it (Broken); set under mu, cleared by a restore,
	// read without a lock: the projection asks after every event.
	broken atomic.Pointer[error]

	// Checkpoints (checkpoint_write.go). cpGen numbers them: a row made
	// while checkpoint n is written is stamped n (row.cp) and left out of
	// it. epoch counts the changes that replace rows rather than fold into
	// them (Refold, a restore), under mu: a checkpoint being written across
	// one is abandoned. checkpointing is set while one is written.
	cpGen         atomic.Uint32
	epoch         uint64
	checkpointing atomic.Bool

	// Availability lists pools and their figures; Reservations finds
	// reservations by id; Board aggregates pools per slot. All three read
	// the pools above.
	Availability *Availability
	Reservations *Reservations
	Board        *Board
}

// row is one pool as the read side holds it: the folded pool, shared by
// every model, and what each model indexes about it. A million defined
// pools means a million rows, so a row keeps nothing it can read off the
// pool: its counts and deadlines are the pool's own (capacity.Pool.Units,
// LapsedAt), whether it is in Availability.byStart is whether the pool is
// defined, and its board cell says its cell key. It is 448 bytes (the
// 448-byte size class, filled by the checkpoint stamp cp), most of them the
// capacity.Pool.
type row struct {
	fold
	// body, while not nil, holds the pool's reservations still encoded,
	// as a checkpoint loaded them (lazy.go); pool then has its head only.
	body *body

	// availability
	start int64                     // StartsAt in unix nanoseconds, the index key with the id
	memo  atomic.Pointer[lapseMemo] // valid while memo.seq == lastSeq

	// board
	cell    *Cell // the cell contrib is added to; nil: not counted
	contrib share // what the pool adds to its cell

	// fenced are sequences of commits removed from the stream, never
	// applied (Refold); behind a pointer, as rare as it is, so that a row
	// stays in the 448-byte size class.
	fenced *[]uint64
	// indexedIDs counts the reservation ids the lookup index holds for
	// the pool (Figures).
	indexedIDs int
	// cp is the checkpoint that wrote the row, or was being written when
	// the row was made (Models.cpGen): a checkpoint writes the rows with an
	// older one. Read and written by the checkpoint's encoder under the
	// read lock (it alone touches it), set by Apply on a new row.
	cp uint32
}

// New returns empty read models sharing one copy of each pool.
func New() *Models {
	m := &Models{pools: make(map[string]*row), held: make(map[string]*row), names: make(map[string]string)}
	m.Availability = &Availability{m: m}
	m.Reservations = &Reservations{m: m, byID: newPoolsByID(0)}
	m.Board = &Board{m: m, cells: make(map[cellKey]*Cell), subs: make(map[*boardSub]struct{})}
	return m
}

// Broken returns, once a pool loaded from a checkpoint failed to decode
// when an event touched it, that error: the models no longer follow the
// stream (that pool's events are not applied) and must be rebuilt from it,
// after the checkpoint is deleted (it would be loaded again). A checkpoint
// of broken models is refused. Nil otherwise; Reset and ReadCheckpoint
// clear it.
func (m *Models) Broken() error {
	if err := m.broken.Load(); err != nil {
		return *err
	}
	return nil
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
		// The id outlives the message, whose subject it may be a slice
		// of: a copy of its own, which the folded pool shares (below).
		pool = strings.Clone(pool)
		r = &row{cp: m.cpGen.Load()}
		m.pools[pool] = r
	} else if r.pool.ID == pool {
		pool = r.pool.ID // the index by reservation id keeps this one
	}
	indexed := r.pool.Defined() // a defined pool is in Availability.byStart
	if r.fenced != nil && slices.Contains(*r.fenced, seq) {
		return
	}
	if applied, err := r.apply(seq, events); err != nil {
		m.broken.CompareAndSwap(nil, &err)
		return
	} else if !applied {
		return
	}
	if r.pool.ID == pool {
		r.pool.ID = pool // one copy of the id for the map key and the pool
	}
	m.noteHeld(pool, r)
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
		r.pool.Region, r.pool.Kind = m.name(r.pool.Region), m.name(r.pool.Kind)
		m.Availability.reindex(r, indexed)
	}
	m.Board.update(seq, r)
}

// name returns the models' copy of a region or kind name.
func (m *Models) name(s string) string {
	if c, ok := m.names[s]; ok {
		return c
	}
	m.names[s] = s
	return s
}

// noteHeld keeps r in m.held while its pool has a live hold.
func (m *Models) noteHeld(pool string, r *row) {
	if _, live := r.nextDeadline(); live {
		m.held[pool] = r
	} else {
		delete(m.held, pool)
	}
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
// they were removed. Every model follows: availability's index, the
// reservation index (the pool's ids as history has them), the pools with
// a live hold, the board's cell, whose change is published. It takes the
// write lock once; a commit of the pool after history's last is applied
// as usual.
func (m *Models) Refold(pool string, history []Commit, fenced []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++ // a checkpoint being written may have written the old row
	if old := m.pools[pool]; old != nil {
		if old.cell != nil {
			m.Board.add(m.position, old.cell.key(), old.contrib, -1, true)
		}
		if old.pool.Defined() {
			if i, ok := m.Availability.findRow(old.start, old.pool.ID); ok {
				m.Availability.byStart = slices.Delete(m.Availability.byStart, i, i+1)
			}
		}
		m.Reservations.byID.removePool(pool)
		delete(m.held, pool)
		if old.fenced != nil {
			fenced = slices.Concat(fenced, *old.fenced) // never into the caller's array
		}
	} else {
		pool = strings.Clone(pool)
	}
	r := &row{cp: m.cpGen.Load()}
	if len(fenced) > 0 {
		fenced = slices.Clone(fenced)
		r.fenced = &fenced
	}
	m.pools[pool] = r
	defined := false
	for _, c := range history {
		if slices.Contains(fenced, c.Seq) {
			continue
		}
		if applied, _ := r.apply(c.Seq, c.Events); !applied { // a new row: no body to decode
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
	m.noteHeld(pool, r)
	if defined {
		r.pool.Region, r.pool.Kind = m.name(r.pool.Region), m.name(r.pool.Kind)
		m.Availability.reindex(r, false)
	}
	m.Board.update(m.position, r)
}
