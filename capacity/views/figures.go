package views

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// PoolFigures is one pool as the read models hold it, for a check against a
// fresh fold of the stream (capacityd verify): its view at a stated time,
// the last stream sequence applied to it, and how many reservations the
// reservation index knows in it.
type PoolFigures struct {
	Pool         string
	View         capacity.PoolView // HomeRegion left to the caller
	Seq          uint64            // highest stream sequence applied to the pool
	Reservations int               // reservation ids the lookup index holds for the pool
}

// Figures returns up to limit pools with an id after after, sorted by id,
// that keep selects (nil: every pool), each with its view at now, and the
// after of the next page ("" on the last). A pool's figures and its Seq are
// read under one lock, so they agree with a fold of the stream up to Seq,
// whatever the models' position. It sorts the pools' ids on every call: a
// verifier's read, not a hot path. keep is called under the models' read
// lock and must not take it.
func (m *Models) Figures(after string, limit int, now time.Time, keep func(pool string) bool) ([]PoolFigures, string) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := slices.Sorted(maps.Keys(m.pools))
	i, _ := slices.BinarySearch(ids, after)
	if i < len(ids) && ids[i] == after {
		i++
	}
	var out []PoolFigures
	next := ""
	for ; i < len(ids); i++ {
		id := ids[i]
		if m.pools[id].lastSeq == 0 || keep != nil && !keep(id) {
			continue // a row left empty by Refold holds nothing
		}
		if len(out) == limit {
			next = out[limit-1].Pool
			break
		}
		r := m.pools[id]
		out = append(out, PoolFigures{Pool: id, View: r.view(now.UnixNano()), Seq: r.lastSeq, Reservations: r.indexedIDs})
	}
	return out, next
}

// FigureMismatch is one difference between a read model's pool and a fresh
// fold of the stream: the pool, what differs and the two values.
type FigureMismatch struct {
	Pool  string
	Field string
	Got   string // the read model's
	Want  string // the fresh fold's
	Seq   uint64 // the pool's sequence the comparison is at
}

// String says the mismatch in one line.
func (m FigureMismatch) String() string {
	return fmt.Sprintf("pool %s at seq %d: %s is %s in the read model, %s in a fresh fold of the stream", m.Pool, m.Seq, m.Field, m.Got, m.Want)
}

// Refold folds a fresh read of a stream for a check of read models'
// figures (capacityd verify). Read models lag, so each pool is folded up to
// the sequence the read model reports for it (PoolFigures.Seq), and the
// position a read model reported before its figures bounds what it must
// hold: an event at or below it that the pool's Seq leaves out was missed.
// Feed it every message of the stream once, in order, with Apply (events
// of another pool than those asked for are folded too: a pool the read
// model lacks is a mismatch). It is not safe for concurrent use.
type Refold struct {
	position uint64
	last     uint64 // highest sequence given to Apply
	figures  map[string]PoolFigures
	pools    map[string]*refoldPool
}

// refoldPool is one pool folded up to the read model's sequence for it.
type refoldPool struct {
	pool      capacity.Pool
	lastSeq   uint64              // last sequence folded
	ids       map[string]struct{} // reservation ids held in the pool (as the lookup index counts them)
	missedSeq uint64              // first event after the read model's Seq and at or below the position
	beyond    bool                // events past the read model's Seq exist (lag, not a mismatch)
}

// NewRefold returns a refold checking figures, which a read model read
// after reporting position for the stream.
func NewRefold(figures []PoolFigures, position uint64) *Refold {
	r := &Refold{position: position, figures: make(map[string]PoolFigures, len(figures)), pools: make(map[string]*refoldPool)}
	for _, f := range figures {
		r.figures[f.Pool] = f
	}
	return r
}

// Apply folds the events of one commit of pool stored at seq, if seq is
// at or below what the read model reflects of the pool.
func (r *Refold) Apply(pool string, seq uint64, events ...capacity.Event) {
	r.last = max(r.last, seq)
	p := r.pools[pool]
	if p == nil {
		p = &refoldPool{ids: make(map[string]struct{})}
		r.pools[pool] = p
	}
	want, known := r.figures[pool]
	if known && seq > want.Seq || !known && seq > r.position {
		p.beyond = true
		if seq <= r.position && p.missedSeq == 0 {
			p.missedSeq = seq
		}
		return
	}
	p.lastSeq = seq
	for _, e := range events {
		p.pool.Evolve(e, seq)
		if h, ok := e.(capacity.Held); ok {
			p.ids[h.ReservationID] = struct{}{}
		}
	}
}

// Check compares each pool the read model reported, and each pool of the
// stream it should hold by its position, with the fold, at now (the time
// the read model's views were taken at). A pool the read model reflects
// past the last message folded (a copy replaced by a fresh mirror that is
// still catching up, while the read model kept what it had read) is
// compared with fallback instead, a fold of the head fed the same figures,
// when given; fallback reports how many were. It returns the mismatches
// sorted by pool, none if the read model agrees with the stream.
func (r *Refold) Check(now time.Time, fallback *Refold) (mismatches []FigureMismatch, viaFallback int) {
	var out []FigureMismatch
	add := func(pool string, seq uint64, field string, got, want any) {
		out = append(out, FigureMismatch{Pool: pool, Seq: seq, Field: field, Got: fmt.Sprint(got), Want: fmt.Sprint(want)})
	}
	ids := slices.Sorted(maps.Keys(r.pools))
	for id := range r.figures {
		if _, ok := r.pools[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		f, known := r.figures[id]
		p := r.pools[id]
		switch {
		case !known && p.lastSeq > 0:
			add(id, p.lastSeq, "pool", "absent", "present")
			continue
		case !known:
			continue // past the read model's position: lag
		}
		if f.Seq > r.last && fallback != nil {
			viaFallback++
			p = fallback.pools[id]
		}
		if p == nil || p.lastSeq == 0 {
			add(id, f.Seq, "pool", "present", "absent")
			continue
		}
		if p.lastSeq != f.Seq {
			add(id, f.Seq, "last sequence", f.Seq, p.lastSeq)
		}
		if p.missedSeq != 0 {
			add(id, f.Seq, "event at seq "+fmt.Sprint(p.missedSeq)+" (at or below the read model's position "+fmt.Sprint(r.position)+")", "missing", "present")
		}
		got, want := f.View, p.pool.ViewAt(now)
		for _, c := range []struct {
			field     string
			got, want any
		}{
			{"capacity", got.Capacity, want.Capacity},
			{"overbook", got.Overbook, want.Overbook},
			{"status", got.Status, want.Status},
			{"version", got.Version, want.Version},
			{"held", got.Held, want.Held},
			{"confirmed", got.Confirmed, want.Confirmed},
			{"available", got.Available, want.Available},
			{"reservations", f.Reservations, len(p.ids)},
		} {
			if c.got != c.want {
				add(id, f.Seq, c.field, c.got, c.want)
			}
		}
	}
	return out, viaFallback
}

// Pools returns how many pools the fold saw.
func (r *Refold) Pools() int { return len(r.pools) }
