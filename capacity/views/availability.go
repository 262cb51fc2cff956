package views

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// Query limits of Availability.Query, the one place they are set: the
// API's limit parameter (web) is checked against them.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Availability is the read model of pools and their figures, queryable by
// region, kind and start time. It reads the pools of its Models. It is safe
// for one writer and many readers.
type Availability struct {
	m       *Models
	byStart []*row // defined pools sorted by (StartsAt, ID)
}

// lapseMemo caches the units of lapsed holds for now in [from, until) as
// of the commit at seq; readers publish it through an atomic pointer.
type lapseMemo struct {
	seq         uint64
	from, until int64
	units       int
}

// AvailabilityQuery selects pools for Availability.Query.
type AvailabilityQuery struct {
	Region string    // "" for every region
	Kind   string    // "" for every kind
	From   time.Time // pools starting at or after From; zero for no bound
	To     time.Time // pools starting before To; zero for no bound
	Limit  int       // at most this many pools; 0 for DefaultLimit, capped at MaxLimit
	Cursor string    // Next of the previous page, "" for the first
}

// AvailabilityPage is one page of pools sorted by StartsAt then ID.
type AvailabilityPage struct {
	Pools    []capacity.PoolView
	Next     string // cursor of the next page, "" on the last
	Position uint64 // stream sequence the page reflects
	// Positions, when the page is read from several regions' streams, is
	// how far it reflects each (Position is then that of the home region).
	Positions Positions
}

// NewAvailability returns an empty availability model over models of its
// own (see New for models that share their pools).
func NewAvailability() *Availability { return New().Availability }

// Apply applies the events of one commit to the models (Models.Apply).
func (a *Availability) Apply(pool string, seq uint64, events ...capacity.Event) {
	a.m.Apply(pool, seq, events...)
}

// Advance records that seq was seen with nothing to apply (Models.Advance).
func (a *Availability) Advance(seq uint64) { a.m.Advance(seq) }

// Position returns the highest stream sequence applied.
func (a *Availability) Position() uint64 { return a.m.Position() }

// Pool returns one pool's view at now and the position it reflects; false
// if the pool is not defined.
func (a *Availability) Pool(id string, now time.Time) (capacity.PoolView, uint64, bool) {
	a.m.mu.RLock()
	defer a.m.mu.RUnlock()
	row := a.m.pools[id]
	if row == nil || !row.pool.Defined() {
		return capacity.PoolView{}, a.m.position, false
	}
	return row.view(now.UnixNano()), a.m.position, true
}

// Query returns the pools q selects, with their figures at now: a hold past
// its deadline counts as free even before its Expired event. A malformed
// cursor is an EINVALID error.
func (a *Availability) Query(q AvailabilityQuery, now time.Time) (AvailabilityPage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	afterStart, afterID, hasCursor, err := decodeCursor(q.Cursor)
	if err != nil {
		return AvailabilityPage{}, err
	}
	nowNano := now.UnixNano()

	a.m.mu.RLock()
	defer a.m.mu.RUnlock()
	page := AvailabilityPage{Position: a.m.position}
	var i int
	switch {
	case hasCursor:
		i, _ = slices.BinarySearchFunc(a.byStart, afterStart, func(r *row, start int64) int {
			return compareInt(r.start, start)
		})
		for i < len(a.byStart) && a.byStart[i].start == afterStart && a.byStart[i].pool.ID <= afterID {
			i++
		}
		if !q.From.IsZero() {
			i = max(i, a.searchStart(q.From.UnixNano()))
		}
	case !q.From.IsZero():
		i = a.searchStart(q.From.UnixNano())
	}
	to := int64(0)
	if !q.To.IsZero() {
		to = q.To.UnixNano()
	}
	for ; i < len(a.byStart); i++ {
		row := a.byStart[i]
		if to != 0 && row.start >= to {
			break
		}
		if (q.Region != "" && row.pool.Region != q.Region) || (q.Kind != "" && row.pool.Kind != q.Kind) {
			continue
		}
		if len(page.Pools) == limit {
			last := page.Pools[limit-1]
			page.Next = encodeCursor(last.StartsAt.UnixNano(), last.ID)
			break
		}
		if page.Pools == nil {
			page.Pools = make([]capacity.PoolView, 0, min(limit, 64))
		}
		page.Pools = append(page.Pools, row.view(nowNano))
	}
	return page, nil
}

// searchStart returns the index of the first pool starting at or after start.
func (a *Availability) searchStart(start int64) int {
	i, _ := slices.BinarySearchFunc(a.byStart, start, func(r *row, start int64) int {
		return compareInt(r.start, start)
	})
	return i
}

// reindex puts a (re)defined pool at its place in byStart.
// indexed says whether it was there already (defined before this commit).
func (a *Availability) reindex(row *row, indexed bool) {
	if indexed {
		if i, ok := a.findRow(row.start, row.pool.ID); ok {
			a.byStart = slices.Delete(a.byStart, i, i+1)
		}
	}
	row.start = row.pool.StartsAt.UnixNano()
	i, _ := a.findRow(row.start, row.pool.ID)
	a.byStart = slices.Insert(a.byStart, i, row)
}

// findRow finds the place of (start, id) in byStart.
func (a *Availability) findRow(start int64, id string) (int, bool) {
	return slices.BinarySearchFunc(a.byStart, start, func(r *row, start int64) int {
		if c := compareInt(r.start, start); c != 0 {
			return c
		}
		return strings.Compare(r.pool.ID, id)
	})
}

// view returns the row's pool as a client sees it at now (unix nanoseconds).
func (r *row) view(now int64) capacity.PoolView {
	p := &r.pool
	held, confirmed := r.units()
	held -= r.lapsedUnits(now)
	available := p.Limit() - held - confirmed
	return capacity.PoolView{
		ID: p.ID, Region: p.Region, Kind: p.Kind, StartsAt: p.StartsAt, EndsAt: p.EndsAt,
		Capacity: p.Capacity, Overbook: p.Overbook, Status: p.Status, Version: p.Version,
		Figures: capacity.Figures{Held: held, Confirmed: confirmed, Available: available, OverCapacity: available < 0},
	}
}

// lapsedUnits returns the units of live holds whose deadline is at or before
// now. Safe under the read lock: lapsedAt writes nothing, and the memo is
// published atomically and keyed by the row's last commit.
func (r *row) lapsedUnits(now int64) int {
	if m := r.memo.Load(); m != nil && m.seq == r.lastSeq && now >= m.from && now < m.until {
		return m.units
	}
	if _, live := r.nextDeadline(); !live {
		return 0 // the common case, and no memo to allocate
	}
	units, next := r.lapsedAt(now)
	until := int64(math.MaxInt64)
	if next != 0 {
		until = next
	}
	r.memo.Store(&lapseMemo{seq: r.lastSeq, from: now, until: until, units: units})
	return units
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// encodeCursor returns the opaque cursor after the pool (start, id).
func encodeCursor(start int64, id string) string {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(start))
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

// decodeCursor reverses encodeCursor; "" is no cursor.
func decodeCursor(cursor string) (start int64, id string, ok bool, err error) {
	if cursor == "" {
		return 0, "", false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < 9 {
		return 0, "", false, capacity.Errorf(capacity.EINVALID, "malformed cursor")
	}
	return int64(binary.BigEndian.Uint64(b)), string(b[8:]), true, nil
}

// LapsedPools returns, sorted, the pools that have a hold whose deadline
// passed before now without an Expired event yet: the pools a sweeper
// should visit. It scans every pool with a live hold, so call it every few
// seconds, not per request.
func (a *Availability) LapsedPools(now time.Time) []string {
	nowNano := now.UnixNano()
	a.m.mu.RLock()
	defer a.m.mu.RUnlock()
	var ids []string
	for id, row := range a.m.held {
		if next, ok := row.nextDeadline(); ok && next < nowNano {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}
