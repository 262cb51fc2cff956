package views

import (
	"github.com/capacityd/capacityd/capacity"
)

// fold is one pool as a read model holds it: the domain's Pool evolved
// event by event, with the unit counts a reader needs without calling
// Pool.FiguresAt (which writes its memo, so must not run under a read lock).
type fold struct {
	pool      capacity.Pool
	lastSeq   uint64 // highest seq applied to this pool
	held      int    // units of reservations in StatusHeld, lapsed or not
	confirmed int    // units of reservations in StatusConfirmed
}

// holdState is what one reservation contributes to a pool's counts.
type holdState struct {
	held      bool
	confirmed bool
	expiresAt int64 // unix nanoseconds, meaningful when held
	quantity  int
}

func stateOf(r *capacity.Reservation) holdState {
	if r == nil {
		return holdState{}
	}
	return holdState{
		held:      r.Status == capacity.StatusHeld,
		confirmed: r.Status == capacity.StatusConfirmed,
		expiresAt: r.ExpiresAt.UnixNano(),
		quantity:  r.Quantity,
	}
}

func (s holdState) units() (held, confirmed int) {
	switch {
	case s.held:
		return s.quantity, 0
	case s.confirmed:
		return 0, s.quantity
	}
	return 0, 0
}

// apply evolves the pool with the events of one commit stored at seq, and
// calls changed (if not nil) for every event that concerns a reservation,
// with that reservation's state before and after the event. It returns
// false, changing nothing, when seq was already applied: every event of a
// commit shares its sequence, so a commit is applied whole or not at all.
func (f *fold) apply(seq uint64, events []capacity.Event, changed func(id string, before, after holdState)) bool {
	if seq <= f.lastSeq {
		return false
	}
	f.lastSeq = seq
	for _, e := range events {
		id := capacity.ReservationID(e)
		var before holdState
		if id != "" {
			before = stateOf(f.pool.Reservations[id])
		}
		f.pool.Evolve(e, seq)
		if id == "" {
			continue
		}
		after := stateOf(f.pool.Reservations[id])
		bh, bc := before.units()
		ah, ac := after.units()
		f.held += ah - bh
		f.confirmed += ac - bc
		if changed != nil {
			changed(id, before, after)
		}
	}
	return true
}
