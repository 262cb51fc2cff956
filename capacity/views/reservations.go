package views

import (
	"slices"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// Reservations is the read model that finds reservations by id across
// pools. Reservation ids are unique within a pool, not globally, so a lookup
// returns every match. It is safe for one writer and many readers.
type Reservations struct {
	m    *Models
	byID poolsByID // reservation id -> pools holding it
}

// poolsByID maps a reservation id to the pools that have it. Nearly every
// id is in one pool (a booking's is in each of its pools), so that pool is
// the value of one map, and only an id in several pools has a list, in a
// second: a map of slices would cost every reservation a slice header in
// the map and a one-string array besides.
type poolsByID struct {
	one  map[string]string   // id -> its pool, when it is in exactly one
	many map[string][]string // id -> its pools, sorted, when in several
}

func newPoolsByID(n int) poolsByID {
	return poolsByID{one: make(map[string]string, n), many: make(map[string][]string)}
}

// add records that pool has id; false if it was recorded already.
func (x *poolsByID) add(id, pool string) bool {
	if pools, ok := x.many[id]; ok {
		i, found := slices.BinarySearch(pools, pool)
		if !found {
			x.many[id] = slices.Insert(pools, i, pool)
		}
		return !found
	}
	first, ok := x.one[id]
	switch {
	case !ok:
		x.one[id] = pool
	case first != pool:
		delete(x.one, id)
		x.many[id] = []string{min(first, pool), max(first, pool)}
	default:
		return false
	}
	return true
}

// removePool forgets every id of pool (Models.Refold; a scan of the whole
// index, for a rare operation).
func (x *poolsByID) removePool(pool string) {
	for id, p := range x.one {
		if p == pool {
			delete(x.one, id)
		}
	}
	for id, pools := range x.many {
		i, found := slices.BinarySearch(pools, pool)
		if !found {
			continue
		}
		switch pools = slices.Delete(pools, i, i+1); len(pools) {
		case 0:
			delete(x.many, id)
		case 1:
			delete(x.many, id)
			x.one[id] = pools[0]
		default:
			x.many[id] = pools
		}
	}
}

// pools returns the pools that have id, sorted.
func (x *poolsByID) pools(id string) []string {
	if pool, ok := x.one[id]; ok {
		return []string{pool}
	}
	return x.many[id]
}

// all calls f for every id and the pools that have it.
func (x *poolsByID) all(f func(id string, pools []string)) {
	for id, pool := range x.one {
		f(id, []string{pool})
	}
	for id, pools := range x.many {
		f(id, pools)
	}
}

// ReservationMatch is one reservation found by id, with its pool.
type ReservationMatch struct {
	Pool string `json:"pool"`
	capacity.Reservation
}

// NewReservations returns an empty reservations model over models of its
// own (see New for models that share their pools).
func NewReservations() *Reservations { return New().Reservations }

// Apply applies the events of one commit to the models (Models.Apply).
func (r *Reservations) Apply(pool string, seq uint64, events ...capacity.Event) {
	r.m.Apply(pool, seq, events...)
}

// index records that pool holds a reservation with the given id.
func (r *Reservations) index(pool, id string) {
	if r.byID.add(id, pool) {
		if row := r.m.pools[pool]; row != nil {
			row.indexedIDs++
		}
	}
}

// Advance records that seq was seen with nothing to apply (Models.Advance).
func (r *Reservations) Advance(seq uint64) { r.m.Advance(seq) }

// Position returns the highest stream sequence applied.
func (r *Reservations) Position() uint64 { return r.m.Position() }

// Lookup returns every reservation with the given id, sorted by pool, and
// the position they reflect. Each status is as seen at now: a hold past its
// deadline reads as expired before its Expired event (Reservation.StatusAt).
func (r *Reservations) Lookup(id string, now time.Time) ([]ReservationMatch, uint64) {
	r.m.mu.RLock()
	defer r.m.mu.RUnlock()
	ids := r.byID.pools(id)
	if len(ids) == 0 {
		return nil, r.m.position
	}
	matches := make([]ReservationMatch, 0, len(ids))
	for _, pool := range ids {
		res := r.m.pools[pool].pool.Reservation(id) // retired ones too (capacity.RetainFinished)
		if res == nil {
			continue
		}
		m := ReservationMatch{Pool: pool, Reservation: *res}
		m.Status = res.StatusAt(now)
		matches = append(matches, m)
	}
	return matches, r.m.position
}

// Count returns how many reservations the model holds, over all pools.
func (r *Reservations) Count() int {
	r.m.mu.RLock()
	defer r.m.mu.RUnlock()
	n := len(r.byID.one)
	for _, pools := range r.byID.many {
		n += len(pools)
	}
	return n
}

// retiredIDs returns the ids the index knows of reservations that are
// retired (capacity.RetainFinished) in some of their pools, with those
// pools: a retired reservation's pool keeps only a hash of its id.
// Callers hold the models' lock.
func (r *Reservations) retiredIDs() map[string][]string {
	out := make(map[string][]string)
	r.byID.all(func(id string, pools []string) {
		for _, key := range pools {
			if row := r.m.pools[key]; row != nil && row.pool.Reservations[id] == nil {
				out[id] = append(out[id], key)
			}
		}
	})
	return out
}
