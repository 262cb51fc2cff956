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
	mu       sync.RWMutex
	pools    map[string]*boardPool
	cells    map[cellKey]*Cell
	subs     map[*boardSub]struct{}
	position uint64
	// traceparent is that of the commit being applied, for the changes it
	// publishes; guarded by mu.
	traceparent string
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

// boardPool is one pool of the board and what it adds to its cell.
type boardPool struct {
	fold
	key     cellKey
	counted bool  // whether contrib is added to the cell at key
	contrib share // what the pool adds to its cell
}

// share is one pool's part of a cell.
type share struct {
	capacity, overbook, held, confirmed, closed, over int
}

// boardSub is one subscriber of the change feed.
type boardSub struct {
	ch chan BoardChange
}

// NewBoard returns an empty board.
func NewBoard() *Board {
	return &Board{
		pools: make(map[string]*boardPool),
		cells: make(map[cellKey]*Cell),
		subs:  make(map[*boardSub]struct{}),
	}
}

// Apply applies the events of one commit, stored at stream sequence seq on
// pool's subject, and publishes the change of the pool's cell, if any. A seq
// at or below the last one applied to that pool is ignored.
func (b *Board) Apply(pool string, seq uint64, events ...capacity.Event) {
	b.ApplyTraced(pool, seq, "", events...)
}

// ApplyTraced is Apply for a commit written under a trace: the changes it
// publishes carry the commit's traceparent (projection.TracedModel).
func (b *Board) ApplyTraced(pool string, seq uint64, traceparent string, events ...capacity.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.traceparent = traceparent
	defer func() { b.traceparent = "" }()
	b.position = max(b.position, seq)
	bp := b.pools[pool]
	if bp == nil {
		bp = &boardPool{}
		b.pools[pool] = bp
	}
	if !bp.apply(seq, events, nil) || !bp.pool.Defined() {
		return
	}
	p := &bp.pool
	key := cellKey{region: p.Region, kind: p.Kind, slot: p.StartsAt.UnixNano()}
	contrib := share{capacity: p.Capacity, overbook: p.Overbook, held: bp.held, confirmed: bp.confirmed}
	if p.Status == capacity.Closed {
		contrib.closed = 1
	}
	if bp.held+bp.confirmed > p.Limit() {
		contrib.over = 1
	}
	if bp.counted && key == bp.key && contrib == bp.contrib {
		return
	}
	if bp.counted {
		b.add(seq, bp.key, bp.contrib, -1, key != bp.key)
	}
	bp.key, bp.contrib, bp.counted = key, contrib, true
	b.add(seq, key, contrib, +1, true)
}

// add adds (sign +1) or removes (-1) a pool's share of the cell at key and,
// if publish, sends the cell's new value to subscribers.
func (b *Board) add(seq uint64, key cellKey, s share, sign int, publish bool) {
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
	c.ClosedPools += sign * s.closed
	c.OverCapacityPools += sign * s.over
	value := *c
	if c.Pools == 0 {
		delete(b.cells, key)
	}
	if publish {
		b.publish(BoardChange{Seq: seq, Cell: value, Traceparent: b.traceparent})
	}
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

// Advance records that every event up to seq has been seen although seq
// itself held nothing to apply (an undecodable message).
func (b *Board) Advance(seq uint64) {
	b.mu.Lock()
	b.position = max(b.position, seq)
	b.mu.Unlock()
}

// Position returns the highest stream sequence applied.
func (b *Board) Position() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.position
}

// Cells returns the cells of a region on a day (DayLayout, UTC), of one kind
// or of every kind if kind is "", sorted by slot then kind, with the
// position they reflect. An empty region or day matches every one.
func (b *Board) Cells(region, kind, day string) ([]Cell, uint64) {
	b.mu.RLock()
	defer b.mu.RUnlock()
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
	return cells, b.position
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
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
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
