package web

import (
	"context"
	"net/http"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
)

// ReservationLookup finds reservations by id across pools (a read model).
type ReservationLookup interface {
	// LookupReservation returns every reservation with the id, as seen at
	// now, once the read model has reached minPosition (or the context's
	// error as EUNAVAILABLE), and the position the answer reflects.
	LookupReservation(ctx context.Context, id string, minPosition views.MinPositions, now time.Time) ([]views.ReservationMatch, views.Positions, error)
}

// reservationsJSON is the answer of GET /v1/reservations/{id}.
type reservationsJSON struct {
	Position     uint64            `json:"position"`
	Positions    map[string]uint64 `json:"positions,omitempty"`
	Reservations []reservationJSON `json:"reservations"`
}

// handleLookupReservation serves GET /v1/reservations/{id}: a reservation
// found by its id alone, in every pool that has one (ids are unique per
// pool). It reads the reservation read model, so it may lag a write by a
// moment; min_position waits for a given write.
func handleLookupReservation(l ReservationLookup, now func() time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := idParam(r, "id")
		if err != nil {
			Error(w, r, err)
			return
		}
		minPos, err := minPositionParam(r.URL.Query())
		if err != nil {
			Error(w, r, err)
			return
		}
		if l == nil {
			Error(w, r, capacity.Errorf(capacity.EUNAVAILABLE, "the reservation read model is not running"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), MaxMinPositionWait)
		defer cancel()
		t := now()
		matches, position, err := l.LookupReservation(ctx, id, minPos, t)
		if err != nil {
			Error(w, r, err)
			return
		}
		if len(matches) == 0 {
			Error(w, r, capacity.Errorf(capacity.ENOTFOUND, "no reservation %s in any pool (read model at position %d)", id, position.Position()))
			return
		}
		out := reservationsJSON{Position: position.Position(), Positions: position.Regions, Reservations: make([]reservationJSON, len(matches))}
		for i, m := range matches {
			out.Reservations[i] = reservationOf(m.Pool, m.Reservation, t)
		}
		encode(w, r, http.StatusOK, out)
	}
}
