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
	byID map[string][]string // reservation id -> pools holding it, sorted
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
	ids := r.byID[id]
	if i, found := slices.BinarySearch(ids, pool); !found {
		r.byID[id] = slices.Insert(ids, i, pool)
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
	ids := r.byID[id]
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
	n := 0
	for _, ids := range r.byID {
		n += len(ids)
	}
	return n
}

// retiredIDs returns the ids the index knows of reservations that are
// retired (capacity.RetainFinished) in some of their pools, with those
// pools: a retired reservation's pool keeps only a hash of its id.
// Callers hold the models' lock.
func (r *Reservations) retiredIDs() map[string][]string {
	out := make(map[string][]string)
	for id, pools := range r.byID {
		for _, key := range pools {
			if row := r.m.pools[key]; row != nil && row.pool.Reservations[id] == nil {
				out[id] = append(out[id], key)
			}
		}
	}
	return out
}
