package pools_test

import (
	"context"
	"sync/atomic"
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

// A writer's clock may jump while a batch is between its decision and its
// answer (here: during the tail check of a read, which writes nothing). The
// answer must show the pool as decided, not as at the new clock reading: a
// read showing a lapse that no decision recorded would be undone by the
// next writer whose clock is behind (found by TestFaultClockSkew: a read on
// the instance whose clock had just jumped 90 s ahead showed a 2-unit hold
// lapsed, the other instance's reads then showed it held).
func TestAnswerAtDecisionTime(t *testing.T) {
	for _, tt := range []struct {
		name string
		read func(ctx context.Context, svc *pools.Service) (lapsed bool, err error)
	}{
		{"pool", func(ctx context.Context, svc *pools.Service) (bool, error) {
			v, err := svc.Pool(ctx, "p")
			return v.Held == 0, err
		}},
		{"reservation", func(ctx context.Context, svc *pools.Service) (bool, error) {
			r, err := svc.Reservation(ctx, "p", "r1")
			return r.Status == capacity.StatusExpired, err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore()
			var jumped atomic.Bool
			jumper := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time {
				if jumped.Load() {
					return epoch.Add(90 * time.Second)
				}
				return epoch
			}})
			defer jumper.Close()
			behind := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch.Add(-3 * time.Second) }})
			defer behind.Close()
			ctx := context.Background()
			define(t, jumper, "p", 1, epoch)
			if _, err := jumper.Execute(ctx, "p", capacity.Hold{ReservationID: "r1", Quantity: 1, TTL: time.Minute}); err != nil {
				t.Fatal(err)
			}
			store.setLastSeqHook(func() { jumped.Store(true) })
			lapsed, err := tt.read(ctx, jumper)
			store.setLastSeqHook(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !jumped.Load() {
				t.Fatal("the read made no tail check: the clock never jumped")
			}
			// Whatever the read showed, the pool's record must agree with it
			// for every writer after it.
			_, err = behind.Execute(ctx, "p", capacity.Confirm{ReservationID: "r1"})
			switch code := capacity.ErrorCode(err); {
			case lapsed && code != capacity.EEXPIRED:
				t.Fatalf("the read showed r1 lapsed, then the writer behind confirmed it: %v", err)
			case !lapsed && err != nil:
				t.Fatalf("the read showed r1 held, then the writer behind could not confirm it: %v", err)
			}
			if lapsed {
				t.Fatal("the read was decided before the clock jumped, yet showed r1 lapsed")
			}
		})
	}
}

// A booking's parts lapse together, so a single pool's batch cannot record
// one part's lapse. Two writers, clocks 90 s apart: whatever the writer
// ahead shows of a booking (a refused confirm, a read of one of its pools,
// the units of a part given to a plain hold), the writer behind must agree
// with it afterwards (found by TestFaultClockSkew with bookings: the writer
// behind confirmed a booking the writer ahead had shown lapsed).
func TestBookingLapseDecidedOnIsFinal(t *testing.T) {
	for _, tt := range []struct {
		name string
		// act is what the writer ahead does; lapsed: it showed the booking lapsed.
		act func(ctx context.Context, svc *pools.Service, its []capacity.BookingItem) (lapsed bool, err error)
	}{
		{"confirm", func(ctx context.Context, svc *pools.Service, its []capacity.BookingItem) (bool, error) {
			_, err := svc.ConfirmBooking(ctx, "bk", its)
			if capacity.ErrorCode(err) == capacity.EEXPIRED {
				return true, nil
			}
			return false, err
		}},
		{"extend", func(ctx context.Context, svc *pools.Service, its []capacity.BookingItem) (bool, error) {
			_, err := svc.ExtendBooking(ctx, "bk", time.Minute, its)
			if code := capacity.ErrorCode(err); code == capacity.EEXPIRED || code == capacity.EUNAVAILABLE {
				return true, nil
			}
			return false, err
		}},
		{"read-booking", func(ctx context.Context, svc *pools.Service, its []capacity.BookingItem) (bool, error) {
			b, err := svc.Booking(ctx, "bk", its)
			return b.Status == capacity.StatusExpired, err
		}},
		{"read-pool", func(ctx context.Context, svc *pools.Service, its []capacity.BookingItem) (bool, error) {
			v, err := svc.Pool(ctx, "b")
			return v.Held == 0, err
		}},
		{"read-part", func(ctx context.Context, svc *pools.Service, its []capacity.BookingItem) (bool, error) {
			r, err := svc.Reservation(ctx, "b", "bk")
			return r.Status == capacity.StatusExpired, err
		}},
		{"hold-its-units", func(ctx context.Context, svc *pools.Service, its []capacity.BookingItem) (bool, error) {
			_, err := svc.Execute(ctx, "b", capacity.Hold{ReservationID: "r", Quantity: 1, TTL: time.Minute})
			if capacity.ErrorCode(err) == capacity.EINSUFFICIENT {
				return false, nil
			}
			return err == nil, err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore()
			behind := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch }, SweepGrace: time.Hour})
			defer behind.Close()
			ahead := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch.Add(90 * time.Second) }, SweepGrace: time.Hour})
			defer ahead.Close()
			ctx := context.Background()
			define(t, behind, "a", 1, epoch)
			define(t, behind, "b", 1, epoch)
			its := items("a", 1, "b", 1)
			if _, err := behind.Book(ctx, capacity.Book{BookingID: "bk", Items: its, TTL: time.Minute}); err != nil {
				t.Fatal(err)
			}
			lapsed, err := tt.act(ctx, ahead, its)
			if err != nil {
				t.Fatal(err)
			}
			_, err = behind.ConfirmBooking(ctx, "bk", its)
			switch code := capacity.ErrorCode(err); {
			case lapsed && code != capacity.EEXPIRED:
				t.Fatalf("the writer ahead showed the booking lapsed, then the writer behind confirmed it: %v", err)
			case !lapsed && err != nil:
				t.Fatalf("the writer ahead showed the booking held, then the writer behind could not confirm it: %v", err)
			}
		})
	}
}
