package views

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// DayLayout is the layout of a board day: the UTC date of a slot.
const DayLayout = "2006-01-02"

// Board is the planner's read model: utilisation per region, kind, day and
// slot, with a change feed. It is safe for one writer and many readers.
type Board struct {
	m     *Models
	cells map[cellKey]*Cell
	subs  map[*boardSub]struct{}
}

// Cell is the utilisation of one slot: every pool of a region and kind that
// starts at Slot. Held counts holds as recorded, until their Expired event.
type Cell struct {
	Region            string    `json:"region"`
	Kind              string    `json:"kind"`
	Day               string    `json:"day"` // UTC date of Slot, DayLayout
	Slot              time.Time `json:"slot"`
	Pools             int       `json:"pools"`
	Capacity          int       `json:"capacity"`
	Overbook          int       `json:"overbook"`
	Held              int       `json:"held"`
	Confirmed         int       `json:"confirmed"`
	ClosedPools       int       `json:"closed_pools"`
	OverCapacityPools int       `json:"over_capacity_pools"` // held + confirmed > capacity + overbook
}

// Closed reports whether every pool of the cell is closed.
func (c Cell) Closed() bool { return c.Pools > 0 && c.ClosedPools == c.Pools }

// OverCapacity reports whether some pool of the cell holds more than its limit.
func (c Cell) OverCapacity() bool { return c.OverCapacityPools > 0 }

// BoardChange is a cell's new value after the event at stream sequence Seq.
// A cell whose last pool left it is sent with Pools == 0.
type BoardChange struct {
	Seq  uint64 `json:"seq"`
	Cell Cell   `json:"cell"`
	// Traceparent is the W3C trace context of the write that made the
	// change, "" if it was not traced.
	Traceparent string `json:"traceparent,omitempty"`
}

// cellKey identifies a cell.
type cellKey struct {
	region, kind string
	slot         int64 // unix nanoseconds
}

// share is one pool's part of a cell.
type share struct {
	capacity, overbook, held, confirmed int
	closed, over                        bool
}

// boardSub is one subscriber of the change feed.
type boardSub struct {
	ch chan BoardChange
}

// NewBoard returns an empty board over models of its own (see New for
// models that share their pools).
func NewBoard() *Board { return New().Board }

// Apply applies the events of one commit to the models (Models.Apply),
// which publishes the change of the pool's cell, if any.
func (b *Board) Apply(pool string, seq uint64, events ...capacity.Event) {
	b.m.Apply(pool, seq, events...)
}

// ApplyTraced is Apply for a commit written under a trace: the changes it
// publishes carry the commit's traceparent (projection.TracedModel).
func (b *Board) ApplyTraced(pool string, seq uint64, traceparent string, events ...capacity.Event) {
	b.m.ApplyTraced(pool, seq, traceparent, events...)
}

// update moves a pool's share of its cell after the commit at seq changed
// it, and publishes the cell's change.
func (b *Board) update(seq uint64, r *row) {
	if !r.pool.Defined() {
		return
	}
	p := &r.pool
	key := cellKey{region: p.Region, kind: p.Kind, slot: p.StartsAt.UnixNano()}
	held, confirmed := r.units()
	contrib := share{capacity: p.Capacity, overbook: p.Overbook, held: held, confirmed: confirmed,
		closed: p.Status == capacity.Closed, over: held+confirmed > p.Limit()}
	if r.cell != nil && key == r.cell.key() && contrib == r.contrib {
		return
	}
	if r.cell != nil {
		old := r.cell.key()
		b.add(seq, old, r.contrib, -1, key != old)
	}
	r.contrib = contrib
	r.cell = b.add(seq, key, contrib, +1, true)
}

// add adds (sign +1) or removes (-1) a pool's share of the cell at key and,
// if publish, sends the cell's new value to subscribers. It returns the
// cell, nil if it no longer counts any pool (then it is gone).
func (b *Board) add(seq uint64, key cellKey, s share, sign int, publish bool) *Cell {
	c := b.cells[key]
	if c == nil {
		slot := time.Unix(0, key.slot).UTC()
		c = &Cell{Region: key.region, Kind: key.kind, Day: slot.Format(DayLayout), Slot: slot}
		b.cells[key] = c
	}
	c.Pools += sign
	c.Capacity += sign * s.capacity
	c.Overbook += sign * s.overbook
	c.Held += sign * s.held
	c.Confirmed += sign * s.confirmed
	c.ClosedPools += sign * b2i(s.closed)
	c.OverCapacityPools += sign * b2i(s.over)
	value := *c
	if c.Pools == 0 {
		delete(b.cells, key)
		c = nil
	}
	if publish {
		b.publish(BoardChange{Seq: seq, Cell: value, Traceparent: b.m.traceparent})
	}
	return c
}

// key returns the cell's key in Board.cells.
func (c *Cell) key() cellKey {
	return cellKey{region: c.Region, kind: c.Kind, slot: c.Slot.UnixNano()}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// publish sends a change to every subscriber without blocking; a subscriber
// whose buffer is full is dropped.
func (b *Board) publish(change BoardChange) {
	for s := range b.subs {
		select {
		case s.ch <- change:
		default:
			delete(b.subs, s)
			close(s.ch)
		}
	}
}

// Advance records that seq was seen with nothing to apply (Models.Advance).
func (b *Board) Advance(seq uint64) { b.m.Advance(seq) }

// Position returns the highest stream sequence applied.
func (b *Board) Position() uint64 { return b.m.Position() }

// Cells returns the cells of a region on a day (DayLayout, UTC), of one kind
// or of every kind if kind is "", sorted by slot then kind, with the
// position they reflect. An empty region or day matches every one.
func (b *Board) Cells(region, kind, day string) ([]Cell, uint64) {
	b.m.mu.RLock()
	defer b.m.mu.RUnlock()
	var cells []Cell
	for key, c := range b.cells {
		if (region != "" && key.region != region) || (kind != "" && key.kind != kind) || (day != "" && c.Day != day) {
			continue
		}
		cells = append(cells, *c)
	}
	slices.SortFunc(cells, func(x, y Cell) int {
		return cmp.Or(x.Slot.Compare(y.Slot), cmp.Compare(x.Region, y.Region), cmp.Compare(x.Kind, y.Kind))
	})
	return cells, b.m.position
}

// Subscribe returns a channel of board changes, buffered to hold buffer of
// them (at least 1), and a function that ends the subscription. The channel
// is closed when cancel is called, when ctx ends, or when the subscriber
// falls a full buffer behind: it is then dropped, never waited for, and
// should read Cells again and resubscribe. To follow the board without a
// gap, subscribe first, then read Cells, then skip changes with Seq at or
// below the position Cells returned.
func (b *Board) Subscribe(ctx context.Context, buffer int) (<-chan BoardChange, func()) {
	s := &boardSub{ch: make(chan BoardChange, max(buffer, 1))}
	b.m.mu.Lock()
	b.subs[s] = struct{}{}
	b.m.mu.Unlock()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			b.m.mu.Lock()
			defer b.m.mu.Unlock()
			if _, ok := b.subs[s]; ok {
				delete(b.subs, s)
				close(s.ch)
			}
		})
	}
	stop := context.AfterFunc(ctx, cancel)
	return s.ch, func() {
		stop()
		cancel()
	}
}
