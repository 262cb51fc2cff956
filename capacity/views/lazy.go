package views

import (
	"fmt"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// body is a pool loaded from a checkpoint and not decoded yet: its snapshot
// bytes and the few figures queries need without them. A start from a
// checkpoint then costs a pass over the bytes per pool, not the decoding of
// every reservation ever kept (millions after a long history), and a pool's
// reservations are decoded when an event or a lookup first touches it.
// While a row has a body, its pool holds only the head fields (id, region,
// kind, window, capacity, overbook, status, version, updated at); the row's
// methods below answer the rest from the body.
type body struct {
	raw             []byte // capacity.Pool.MarshalSnapshot bytes, checked by the checkpoint's CRC
	held, confirmed int    // capacity.Pool.Units
	holds           []liveHold

	once sync.Once // decodes raw into pool, for readers under the read lock
	pool *capacity.Pool
	err  error
}

// liveHold is one live hold's deadline (unix nanoseconds) and quantity, as
// capacity.Pool.LiveHolds reports it; a body keeps them sorted by deadline.
type liveHold struct {
	at       int64
	quantity int
}

// decoded returns the body's pool, decoding it on first use. Safe for
// concurrent readers.
func (b *body) decoded() (*capacity.Pool, error) {
	b.once.Do(func() {
		b.pool, b.err = capacity.UnmarshalSnapshot(b.raw)
	})
	return b.pool, b.err
}

// materialize replaces the row's head-only pool by its decoded body, so it
// can be evolved. Callers hold the write lock. The checkpoint's CRC vouched
// for the bytes and this build wrote them (its version is checked), so a
// body that does not decode is a bug, not bad input. It is not folded into
// (the pool would lose its reservations) and the process goes on: the row
// keeps its body, the error is returned, and Models.Broken reports it so the
// models can be rebuilt from the stream (a panic here would take the
// process down at every start, on the same checkpoint).
func (r *row) materialize() error {
	b := r.body
	if b == nil {
		return nil
	}
	p, err := b.decoded()
	if err != nil {
		return fmt.Errorf("views: pool %s from a checkpoint does not decode: %w", r.pool.ID, err)
	}
	id, region, kind := r.pool.ID, r.pool.Region, r.pool.Kind // the models' shared copies
	r.pool = *p
	r.pool.ID, r.pool.Region, r.pool.Kind = id, region, kind
	r.body = nil
	return nil
}

// units returns the units held (lapsed or not) and confirmed.
func (r *row) units() (held, confirmed int) { return unitsOf(r.body, &r.pool) }

// unitsOf is row.units for a pool and its body (nil once decoded).
func unitsOf(b *body, p *capacity.Pool) (held, confirmed int) {
	if b != nil {
		return b.held, b.confirmed
	}
	return p.Units()
}

// nextDeadline returns the earliest deadline of a live hold in unix
// nanoseconds, false if there is none.
func (r *row) nextDeadline() (int64, bool) {
	if b := r.body; b != nil {
		if len(b.holds) == 0 {
			return 0, false
		}
		return b.holds[0].at, true
	}
	next, ok := r.pool.NextDeadline()
	if !ok {
		return 0, false
	}
	return next.UnixNano(), true
}

// lapsedAt returns the units of live holds whose deadline is at or before
// now and a lower bound of the next deadline after now (0: none), as
// capacity.Pool.LapsedAt. It writes nothing.
func (r *row) lapsedAt(now int64) (units int, next int64) {
	if b := r.body; b != nil {
		for _, h := range b.holds {
			if h.at > now {
				return units, h.at
			}
			units += h.quantity
		}
		return units, 0
	}
	n, t := r.pool.LapsedAt(time.Unix(0, now))
	if !t.IsZero() {
		next = t.UnixNano()
	}
	return n, next
}

// reservation returns the pool's reservation id (capacity.Pool.Reservation),
// decoding the body if the row has one. Safe under the read lock.
func (r *row) reservation(id string) *capacity.Reservation {
	if b := r.body; b != nil {
		p, err := b.decoded()
		if err != nil {
			return nil // materialize reports it on the next event
		}
		return p.Reservation(id)
	}
	return r.pool.Reservation(id)
}

// snapshotOf appends the snapshot bytes of a pool and its body (nil once
// decoded) to dst: the body's own if it was never decoded.
func snapshotOf(b *body, p *capacity.Pool, dst []byte) ([]byte, error) {
	if b != nil {
		return append(dst, b.raw...), nil
	}
	return p.AppendSnapshot(dst)
}
