package views

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// Replay is the reference the models are checked against: a plain fold of
// a history into one capacity.Pool per pool, with no index, cache or lock.
// Feed it a fresh read of the stream (streams.PoolEvents.Log) and compare
// with Diff. It is not safe for concurrent use.
type Replay struct {
	pools    map[string]*capacity.Pool
	position uint64
}

// NewReplay returns an empty replay.
func NewReplay() *Replay {
	return &Replay{pools: make(map[string]*capacity.Pool)}
}

// Apply evolves pool with events stored at seq. Unlike the models it does
// not deduplicate: feed it each message once, as a fresh read of the stream
// does.
func (r *Replay) Apply(pool string, seq uint64, events ...capacity.Event) {
	r.position = max(r.position, seq)
	p := r.pools[pool]
	if p == nil {
		p = &capacity.Pool{}
		r.pools[pool] = p
	}
	for _, e := range events {
		p.Evolve(e, seq)
	}
}

// Advance records that seq was seen with nothing to apply.
func (r *Replay) Advance(seq uint64) { r.position = max(r.position, seq) }

// Position returns the highest sequence seen.
func (r *Replay) Position() uint64 { return r.position }

// Pool returns the replayed pool, nil if it has no events.
func (r *Replay) Pool(id string) *capacity.Pool { return r.pools[id] }

// Diff compares the models given (any may be nil) with the replay at now
// and returns their differences, none if they agree, at most max of them.
func (r *Replay) Diff(a *Availability, res *Reservations, b *Board, now time.Time, maxDiffs int) []string {
	var diffs []string
	report := func(format string, args ...any) bool {
		diffs = append(diffs, fmt.Sprintf(format, args...))
		return len(diffs) < maxDiffs
	}
	ids := slices.Sorted(maps.Keys(r.pools))
	if a != nil {
		if got := a.Position(); got != r.position {
			report("availability position %d, want %d", got, r.position)
		}
		var want []capacity.PoolView
		for _, id := range ids {
			if p := r.pools[id]; p.Defined() {
				want = append(want, p.ViewAt(now))
			}
		}
		slices.SortFunc(want, func(x, y capacity.PoolView) int {
			if c := x.StartsAt.Compare(y.StartsAt); c != 0 {
				return c
			}
			return compareString(x.ID, y.ID)
		})
		var got []capacity.PoolView
		for cursor := ""; ; {
			page, err := a.Query(AvailabilityQuery{Cursor: cursor, Limit: 37}, now)
			if err != nil {
				report("availability query: %v", err)
				break
			}
			got = append(got, page.Pools...)
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		if len(got) != len(want) {
			report("availability has %d pools, want %d", len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] && !report("availability pool %d:\n got %+v\nwant %+v", i, got[i], want[i]) {
				return diffs
			}
		}
	}
	if res != nil {
		if got := res.Position(); got != r.position {
			report("reservations position %d, want %d", got, r.position)
		}
		count := 0
		for _, id := range ids {
			for rid, want := range r.pools[id].Reservations {
				count++
				matches, _ := res.Lookup(rid, now)
				i := slices.IndexFunc(matches, func(m ReservationMatch) bool { return m.Pool == id })
				w := *want
				w.Status = want.StatusAt(now)
				if i < 0 {
					if !report("reservation %s of pool %s missing", rid, id) {
						return diffs
					}
				} else if !matches[i].Reservation.Equal(w) && !report("reservation %s of pool %s:\n got %+v\nwant %+v", rid, id, matches[i].Reservation, w) {
					return diffs
				}
			}
		}
		if got := res.Count(); got != count {
			report("reservations holds %d, want %d", got, count)
		}
	}
	if b != nil {
		if got := b.Position(); got != r.position {
			report("board position %d, want %d", got, r.position)
		}
		want := r.cells()
		got, _ := b.Cells("", "", "")
		if len(got) != len(want) {
			report("board has %d cells, want %d", len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] && !report("board cell %d:\n got %+v\nwant %+v", i, got[i], want[i]) {
				return diffs
			}
		}
	}
	return diffs
}

// cells computes the board from the replayed pools, sorted as Board.Cells.
func (r *Replay) cells() []Cell {
	byKey := make(map[cellKey]*Cell)
	for _, p := range r.pools {
		if !p.Defined() {
			continue
		}
		key := cellKey{region: p.Region, kind: p.Kind, slot: p.StartsAt.UnixNano()}
		c := byKey[key]
		if c == nil {
			slot := p.StartsAt.UTC()
			c = &Cell{Region: p.Region, Kind: p.Kind, Day: slot.Format(DayLayout), Slot: slot}
			byKey[key] = c
		}
		f := p.FiguresAt(time.Time{}) // nothing lapses at the zero time: holds as recorded
		c.Pools++
		c.Capacity += p.Capacity
		c.Overbook += p.Overbook
		c.Held += f.Held
		c.Confirmed += f.Confirmed
		if p.Status == capacity.Closed {
			c.ClosedPools++
		}
		if f.Held+f.Confirmed > p.Limit() {
			c.OverCapacityPools++
		}
	}
	cells := make([]Cell, 0, len(byKey))
	for _, c := range byKey {
		cells = append(cells, *c)
	}
	slices.SortFunc(cells, func(x, y Cell) int {
		if c := x.Slot.Compare(y.Slot); c != 0 {
			return c
		}
		if c := compareString(x.Region, y.Region); c != 0 {
			return c
		}
		return compareString(x.Kind, y.Kind)
	})
	return cells
}

func compareString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
