package pools_test

import (
	"context"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
)

// Two writers of one pool, clocks 90 s apart. The writer ahead refuses a
// confirm as expired (and a read shows the hold expired); the writer behind,
// for which the hold is still live by its own clock, must not then confirm
// it, nor show it live: the lapse was decided on, so it is on record.
func TestLapseDecidedOnIsFinal(t *testing.T) {
	store := newMemStore()
	behind := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch }})
	defer behind.Close()
	ahead := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch.Add(90 * time.Second) }})
	defer ahead.Close()
	ctx := context.Background()
	define(t, behind, "p", 1, epoch)
	if _, err := behind.Execute(ctx, "p", capacity.Hold{ReservationID: "r1", Quantity: 1, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := ahead.Execute(ctx, "p", capacity.Confirm{ReservationID: "r1"}); capacity.ErrorCode(err) != capacity.EEXPIRED {
		t.Fatalf("confirm by the writer ahead = %v, want %s", err, capacity.EEXPIRED)
	}
	if _, err := behind.Execute(ctx, "p", capacity.Confirm{ReservationID: "r1"}); capacity.ErrorCode(err) != capacity.EEXPIRED {
		t.Fatalf("confirm by the writer behind after the refusal = %v, want %s", err, capacity.EEXPIRED)
	}
	if r, err := behind.Reservation(ctx, "p", "r1"); err != nil || r.Status != capacity.StatusExpired {
		t.Fatalf("r1 read by the writer behind = %+v, %v; want expired", r, err)
	}
}
