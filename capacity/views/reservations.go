package views

import (
	"slices"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// Reservations is the read model that finds reservations by id across
// pools. Reservation ids are unique within a pool, not globally, so a lookup
// returns every match. It is safe for one writer and many readers.
type Reservations struct {
	mu       sync.RWMutex
	pools    map[string]*fold
	byID     map[string][]string // reservation id -> pools holding it, sorted
	position uint64
}

// ReservationMatch is one reservation found by id, with its pool.
type ReservationMatch struct {
	Pool string `json:"pool"`
	capacity.Reservation
}

// NewReservations returns an empty reservations model.
func NewReservations() *Reservations {
	return &Reservations{pools: make(map[string]*fold), byID: make(map[string][]string)}
}

// Apply applies the events of one commit, stored at stream sequence seq on
// pool's subject. A seq at or below the last one applied to that pool is
// ignored.
func (r *Reservations) Apply(pool string, seq uint64, events ...capacity.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.position = max(r.position, seq)
	f := r.pools[pool]
	if f == nil {
		f = &fold{}
		r.pools[pool] = f
	}
	if !f.apply(seq, events, nil) {
		return
	}
	for _, e := range events {
		held, ok := e.(capacity.Held)
		if !ok {
			continue
		}
		ids := r.byID[held.ReservationID]
		if i, found := slices.BinarySearch(ids, pool); !found {
			r.byID[held.ReservationID] = slices.Insert(ids, i, pool)
		}
	}
}

// Advance records that every event up to seq has been seen although seq
// itself held nothing to apply (an undecodable message).
func (r *Reservations) Advance(seq uint64) {
	r.mu.Lock()
	r.position = max(r.position, seq)
	r.mu.Unlock()
}

// Position returns the highest stream sequence applied.
func (r *Reservations) Position() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.position
}

// Lookup returns every reservation with the given id, sorted by pool, and
// the position they reflect. Each status is as seen at now: a hold past its
// deadline reads as expired before its Expired event (Reservation.StatusAt).
func (r *Reservations) Lookup(id string, now time.Time) ([]ReservationMatch, uint64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := r.byID[id]
	if len(ids) == 0 {
		return nil, r.position
	}
	matches := make([]ReservationMatch, 0, len(ids))
	for _, pool := range ids {
		res := r.pools[pool].pool.Reservations[id]
		if res == nil {
			continue
		}
		m := ReservationMatch{Pool: pool, Reservation: *res}
		m.Status = res.StatusAt(now)
		matches = append(matches, m)
	}
	return matches, r.position
}

// Count returns how many reservations the model holds, over all pools.
func (r *Reservations) Count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, ids := range r.byID {
		n += len(ids)
	}
	return n
}
