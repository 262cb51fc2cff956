package capacity_test

import (
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// A reservation finished RetainFinished ago (in the pool's time) leaves the
// pool's map for a compact record that still answers retries and reads.
func TestFinishedReservationsRetire(t *testing.T) {
	p := given(t, now(slot()), now(hold("r1", 2, time.Minute)), now(hold("r2", 3, time.Minute)), now(hold("r3", 1, time.Hour)),
		at(time.Second, capacity.Release{ReservationID: "r1"}), at(2*time.Minute, capacity.Expire{}))
	if len(p.Reservations) != 3 || p.RetiredCount() != 0 {
		t.Fatalf("before the window: %d whole, %d retired", len(p.Reservations), p.RetiredCount())
	}
	later := t0.Add(2*time.Minute + capacity.RetainFinished)
	mustDo(t, p, capacity.ChangePool{Capacity: ptr(11)}, later) // moves the pool's time on
	if _, whole := p.Reservations["r1"]; whole || p.RetiredCount() != 2 {
		t.Fatalf("after the window: r1 whole %v, %d retired; want r1 and r2 retired", whole, p.RetiredCount())
	}
	if _, whole := p.Reservations["r3"]; !whole {
		t.Fatal("r3 (expired at t0+1h, less than a window ago) was retired too early")
	}
	r1 := p.Reservation("r1")
	if r1 == nil || r1.Status != capacity.StatusReleased || r1.Quantity != 2 || r1.TTL != time.Minute || r1.ID != "r1" {
		t.Fatalf("retired r1 = %+v", r1)
	}
	if r2 := p.Reservation("r2"); r2 == nil || r2.Status != capacity.StatusExpired || !r2.ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("retired r2 = %+v", r2)
	}
	// Retries and commands on a retired reservation answer as before.
	if events, err := capacity.Decide(p, hold("r1", 2, time.Minute), later); err != nil || events != nil {
		t.Fatalf("retried hold of retired r1 = %v, %v; want done", events, err)
	}
	mustRefuse(t, p, hold("r1", 1, time.Minute), later, capacity.ECONFLICT)
	mustRefuse(t, p, capacity.Confirm{ReservationID: "r1"}, later, capacity.ECONFLICT)
	mustRefuse(t, p, capacity.Confirm{ReservationID: "r2"}, later, capacity.EEXPIRED)
	if events, err := capacity.Decide(p, capacity.Release{ReservationID: "r2"}, later); err != nil || events != nil {
		t.Fatalf("release of retired r2 = %v, %v; want nothing to do", events, err)
	}
	if p.Reservation("never") != nil {
		t.Fatal("an unknown id reads as a reservation")
	}
	requireSamePool(t, snapshotRoundTrip(t, p), p)
}

// The pool properties (replay = live, snapshot + tail = replay, never
// overbooked, retries answered as done) hold with reservations retiring
// within the run.
func TestPoolPropertiesWithRetirement(t *testing.T) {
	defer capacity.SetRetainFinished(5 * time.Minute)()
	TestPoolProperties(t)
}
