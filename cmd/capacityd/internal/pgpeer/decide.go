package pgpeer

import (
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// poolRow is a pool as its row holds it: the definition and the counters.
type poolRow struct {
	ID        string
	Region    string
	Kind      string
	StartsAt  time.Time
	EndsAt    time.Time
	Capacity  int64
	Overbook  int64
	Held      int64
	Confirmed int64
	Version   int64
}

// reservationRow is a reservation as its row holds it.
type reservationRow struct {
	ID        string
	Quantity  int64
	TTL       time.Duration
	Status    string
	HeldAt    time.Time
	ExpiresAt time.Time
	Version   int64 // the pool's version the hold was written at
}

// decideHold decides a hold on a pool locked for update, given the
// reservation with the hold's id in that pool if there is one. The rules,
// in capacityd's order (capacity.Decide):
//
//   - an existing reservation with the same quantity and ttl: a repeat,
//     nothing to write (write false, no error); any other: conflict;
//   - a pool whose window has ended: pool-closed;
//   - held + confirmed + quantity above capacity + overbook: insufficient;
//   - else write the hold.
func decideHold(p poolRow, existing *reservationRow, h capacity.Hold, now time.Time) (write bool, err error) {
	if existing != nil {
		if existing.Quantity == int64(h.Quantity) && existing.TTL == h.TTL {
			return false, nil
		}
		return false, capacity.Errorf(capacity.ECONFLICT, "reservation %s exists with a different quantity or ttl", h.ReservationID)
	}
	if !now.Before(p.EndsAt) {
		return false, capacity.Errorf(capacity.ECLOSED, "pool window ended at %s", p.EndsAt.Format(time.RFC3339))
	}
	limit := p.Capacity + p.Overbook
	if used := p.Held + p.Confirmed; used+int64(h.Quantity) > limit {
		return false, capacity.Errorf(capacity.EINSUFFICIENT, "%d units requested, %d available", h.Quantity, max(0, limit-used))
	}
	return true, nil
}

// sameDefinition reports whether defining a pool that exists as p is a
// repeat (200) rather than a conflict (409).
func sameDefinition(p poolRow, d capacity.DefinePool) bool {
	return p.Region == d.Region && p.Kind == d.Kind && p.StartsAt.Equal(d.StartsAt) && p.EndsAt.Equal(d.EndsAt) &&
		p.Capacity == int64(d.Capacity) && p.Overbook == int64(d.Overbook)
}
