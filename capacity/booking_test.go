package capacity_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

func TestExtend(t *testing.T) {
	define := now(slot())
	tests := []struct {
		name  string
		given []step
		cmd   capacity.Extend
		after time.Duration
		want  []capacity.Event
		code  string
	}{
		{"a live hold gets now + ttl", []step{define, now(hold("r1", 2, time.Minute))},
			capacity.Extend{ReservationID: "r1", TTL: 5 * time.Minute}, 30 * time.Second,
			[]capacity.Event{capacity.Extended{ReservationID: "r1", TTL: 5 * time.Minute, ExpiresAt: t0.Add(30*time.Second + 5*time.Minute), At: t0.Add(30 * time.Second)}}, ""},
		{"never shortens a hold", []step{define, now(hold("r1", 2, 10*time.Minute))},
			capacity.Extend{ReservationID: "r1", TTL: time.Minute}, 0, nil, ""},
		{"a lapsed hold", []step{define, now(hold("r1", 2, time.Minute))},
			capacity.Extend{ReservationID: "r1", TTL: time.Minute}, time.Minute, nil, capacity.EEXPIRED},
		{"a confirmed reservation", []step{define, now(hold("r1", 2, time.Minute)), now(capacity.Confirm{ReservationID: "r1"})},
			capacity.Extend{ReservationID: "r1", TTL: time.Minute}, 0, nil, capacity.ECONFLICT},
		{"a released reservation", []step{define, now(hold("r1", 2, time.Minute)), now(capacity.Release{ReservationID: "r1"})},
			capacity.Extend{ReservationID: "r1", TTL: time.Minute}, 0, nil, capacity.ECONFLICT},
		{"unknown", []step{define}, capacity.Extend{ReservationID: "r9", TTL: time.Minute}, 0, nil, capacity.ENOTFOUND},
		{"ttl too short", []step{define, now(hold("r1", 2, time.Minute))},
			capacity.Extend{ReservationID: "r1", TTL: time.Millisecond}, 0, nil, capacity.EINVALID},
		{"ttl too long", []step{define, now(hold("r1", 2, time.Minute))},
			capacity.Extend{ReservationID: "r1", TTL: capacity.MaxTTL + 1}, 0, nil, capacity.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := given(t, tc.given...)
			if tc.code != "" {
				mustRefuse(t, p, tc.cmd, t0.Add(tc.after), tc.code)
				return
			}
			got := mustDo(t, p, tc.cmd, t0.Add(tc.after))
			requireEqual(t, "events", got, tc.want)
		})
	}
}

// An extended hold counts until its new deadline, and no longer.
func TestExtendedHoldCountsUntilItsNewDeadline(t *testing.T) {
	p := given(t, now(slot()), now(hold("r1", 10, time.Minute)))
	mustDo(t, p, capacity.Extend{ReservationID: "r1", TTL: 5 * time.Minute}, t0.Add(30*time.Second))
	mustRefuse(t, p, hold("r2", 1, time.Minute), t0.Add(4*time.Minute), capacity.EINSUFFICIENT)
	mustDo(t, p, hold("r2", 1, time.Minute), t0.Add(5*time.Minute+30*time.Second))
	if got := p.LapsedHolds(t0.Add(5*time.Minute + 30*time.Second)); !reflect.DeepEqual(got, []string{"r1"}) {
		t.Fatalf("lapsed = %v, want [r1]", got)
	}
}

func TestPartialConfirm(t *testing.T) {
	p := given(t, now(slot()), now(hold("r1", 5, time.Minute)))
	mustRefuse(t, p, capacity.Confirm{ReservationID: "r1", Quantity: 6}, t0, capacity.EINVALID)
	got := mustDo(t, p, capacity.Confirm{ReservationID: "r1", Quantity: 3}, t0)
	requireEqual(t, "events", got, []capacity.Event{capacity.Confirmed{ReservationID: "r1", At: t0, Quantity: 3}})
	requireEqual(t, "figures", p.FiguresAt(t0), capacity.Figures{Confirmed: 3, Available: 7})
	r := p.Reservations["r1"]
	if r.Quantity != 3 || r.HeldQuantity != 5 || r.Status != capacity.StatusConfirmed {
		t.Fatalf("reservation = %+v", r)
	}
	// Repeats: the same quantity, or none, change nothing; another conflicts.
	for _, q := range []int{3, 0} {
		if ev, err := capacity.Decide(p, capacity.Confirm{ReservationID: "r1", Quantity: q}, t0); err != nil || ev != nil {
			t.Fatalf("confirm %d again = %v, %v", q, ev, err)
		}
	}
	mustRefuse(t, p, capacity.Confirm{ReservationID: "r1", Quantity: 2}, t0, capacity.ECONFLICT)
	// The hold retried is still the same request.
	if ev, err := capacity.Decide(p, hold("r1", 5, time.Minute), t0); err != nil || ev != nil {
		t.Fatalf("hold retried = %v, %v", ev, err)
	}
	// Confirming all units is the event as before v1.1.
	q := given(t, now(slot()), now(hold("r2", 5, time.Minute)))
	got = mustDo(t, q, capacity.Confirm{ReservationID: "r2", Quantity: 5}, t0)
	requireEqual(t, "events", got, []capacity.Event{capacity.Confirmed{ReservationID: "r2", At: t0}})
}

// Events written before v1.1 read back and replay as they always did.
func TestOldEventsDecodeTheSame(t *testing.T) {
	tests := []struct {
		typ, body string
		want      capacity.Event
	}{
		{capacity.ConfirmedType, `{"reservation_id":"r1","at":"2030-05-01T08:00:00Z"}`, capacity.Confirmed{ReservationID: "r1", At: t0}},
		{capacity.ReleasedType, `{"reservation_id":"r1","at":"2030-05-01T08:00:00Z"}`, capacity.Released{ReservationID: "r1", At: t0}},
		{capacity.ExpiredType, `{"reservation_id":"r1","at":"2030-05-01T08:00:00Z"}`, capacity.Expired{ReservationID: "r1", At: t0}},
		{capacity.HeldType, `{"reservation_id":"r1","quantity":2,"ttl":60000000000,"expires_at":"2030-05-01T08:01:00Z","at":"2030-05-01T08:00:00Z"}`,
			capacity.Held{ReservationID: "r1", Quantity: 2, TTL: time.Minute, ExpiresAt: t0.Add(time.Minute), At: t0}},
	}
	for _, tc := range tests {
		got, err := capacity.Decode(tc.typ, 1, []byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		requireEqual(t, tc.typ, got, tc.want)
		// And they encode as they always did, but for a Held's TTL, which
		// SchemaVersion 2 writes as a duration string (the API's form).
		want := strings.Replace(tc.body, `"ttl":60000000000`, `"ttl":"1m0s"`, 1)
		data, err := capacity.Encode(got)
		if err != nil || string(data) != want {
			t.Fatalf("Encode(%#v) = %s, %v; want %s", got, data, err, want)
		}
	}
}

func TestBookingEventsRoundTrip(t *testing.T) {
	items := []capacity.BookingItem{{Pool: "slot-1", Quantity: 1}, {Pool: "pick-1", Quantity: 3}}
	for _, e := range []capacity.Event{
		capacity.Held{ReservationID: "b1", Quantity: 3, TTL: time.Minute, ExpiresAt: t0.Add(time.Minute), At: t0, Booking: "b1", Items: items},
		capacity.Confirmed{ReservationID: "b1", At: t0, Booking: "b1"},
		capacity.Confirmed{ReservationID: "r1", At: t0, Quantity: 2},
		capacity.Released{ReservationID: "b1", At: t0, Booking: "b1"},
		capacity.Expired{ReservationID: "b1", At: t0, Booking: "b1"},
		capacity.Extended{ReservationID: "b1", TTL: time.Minute, ExpiresAt: t0.Add(time.Minute), At: t0, Booking: "b1"},
	} {
		data, err := capacity.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := capacity.Decode(e.EventType(), capacity.SchemaVersion, data)
		if err != nil {
			t.Fatal(err)
		}
		requireEqual(t, string(data), back, e)
	}
}

func TestBookValidate(t *testing.T) {
	item := func(pool string, q int) capacity.BookingItem { return capacity.BookingItem{Pool: pool, Quantity: q} }
	many := make([]capacity.BookingItem, capacity.MaxBookingItems+1)
	for i := range many {
		many[i] = item("p"+string(rune('a'+i)), 1)
	}
	tests := []struct {
		name string
		book capacity.Book
		ok   bool
	}{
		{"two pools", capacity.Book{BookingID: "b1", Items: []capacity.BookingItem{item("a", 1), item("b", 2)}, TTL: time.Minute}, true},
		{"one pool", capacity.Book{BookingID: "b1", Items: []capacity.BookingItem{item("a", 1)}, TTL: time.Minute}, true},
		{"sixteen pools", capacity.Book{BookingID: "b1", Items: many[:16], TTL: time.Minute}, true},
		{"seventeen pools", capacity.Book{BookingID: "b1", Items: many, TTL: time.Minute}, false},
		{"no items", capacity.Book{BookingID: "b1", TTL: time.Minute}, false},
		{"a pool twice", capacity.Book{BookingID: "b1", Items: []capacity.BookingItem{item("a", 1), item("a", 2)}, TTL: time.Minute}, false},
		{"bad pool id", capacity.Book{BookingID: "b1", Items: []capacity.BookingItem{item("a.b", 1)}, TTL: time.Minute}, false},
		{"zero quantity", capacity.Book{BookingID: "b1", Items: []capacity.BookingItem{item("a", 0)}, TTL: time.Minute}, false},
		{"bad id", capacity.Book{BookingID: "", Items: []capacity.BookingItem{item("a", 1)}, TTL: time.Minute}, false},
		{"ttl too short", capacity.Book{BookingID: "b1", Items: []capacity.BookingItem{item("a", 1)}, TTL: time.Millisecond}, false},
	}
	for _, tc := range tests {
		if err := tc.book.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
}

// bookingPart is the HoldBooking of booking id on the test pool and "other".
func bookingPart(id string, quantity int, ttl time.Duration, at time.Time) capacity.HoldBooking {
	return capacity.HoldBooking{
		Book:      capacity.Book{BookingID: id, Items: []capacity.BookingItem{{Pool: "other", Quantity: 1}, {Pool: slot().Pool, Quantity: quantity}}, TTL: ttl},
		ExpiresAt: at.Add(ttl),
	}
}

func TestBookingParts(t *testing.T) {
	pool := slot().Pool
	p := given(t, now(slot()), now(hold("r1", 6, time.Hour)))

	// Too big: refused, naming the pool.
	_, err := capacity.Decide(p, bookingPart("b1", 5, time.Minute, t0), t0)
	if capacity.ErrorCode(err) != capacity.EINSUFFICIENT || capacity.ErrorPool(err) != pool {
		t.Fatalf("part too big = %v (pool %q)", err, capacity.ErrorPool(err))
	}
	// Fits: a Held naming the booking, with the booking's deadline and items.
	part := bookingPart("b1", 4, time.Minute, t0)
	got := mustDo(t, p, part, t0)
	requireEqual(t, "events", got, []capacity.Event{capacity.Held{ReservationID: "b1", Quantity: 4, TTL: time.Minute,
		ExpiresAt: t0.Add(time.Minute), At: t0, Booking: "b1", Items: part.Items}})
	// The same booking again changes nothing; other items or a plain hold
	// with the id conflict.
	if ev, err := capacity.Decide(p, part, t0.Add(time.Second)); err != nil || ev != nil {
		t.Fatalf("part again = %v, %v", ev, err)
	}
	mustRefuse(t, p, bookingPart("b1", 3, time.Minute, t0), t0, capacity.ECONFLICT)
	mustRefuse(t, p, hold("b1", 4, time.Minute), t0, capacity.ECONFLICT)
	mustRefuse(t, p, bookingPart("r1", 1, time.Minute, t0), t0, capacity.ECONFLICT)
	// A booking's part never moves alone.
	mustRefuse(t, p, capacity.Confirm{ReservationID: "b1"}, t0, capacity.ECONFLICT)
	mustRefuse(t, p, capacity.Release{ReservationID: "b1"}, t0, capacity.ECONFLICT)
	mustRefuse(t, p, capacity.Extend{ReservationID: "b1", TTL: time.Hour}, t0, capacity.ECONFLICT)
	mustRefuse(t, p, capacity.ConfirmBooking{BookingID: "r1"}, t0, capacity.ECONFLICT)
	mustRefuse(t, p, capacity.ConfirmBooking{BookingID: "b9"}, t0, capacity.ENOTFOUND)

	// Lapsed: the sweeper leaves it, the booking's expiry writes it.
	late := t0.Add(2 * time.Minute)
	if ev, err := capacity.Decide(p, capacity.Expire{}, late); err != nil || ev != nil {
		t.Fatalf("sweeper at a lapsed booking = %v, %v", ev, err)
	}
	if got := p.LapsedBookings(late); !reflect.DeepEqual(got, []string{"b1"}) {
		t.Fatalf("lapsed bookings = %v", got)
	}
	mustRefuse(t, p, capacity.ConfirmBooking{BookingID: "b1"}, late, capacity.EEXPIRED)
	if ev, err := capacity.Decide(p, capacity.ExpireBooking{BookingID: "b1"}, t0); err != nil || ev != nil {
		t.Fatalf("expire a live booking = %v, %v", ev, err)
	}
	got = mustDo(t, p, capacity.ExpireBooking{BookingID: "b1"}, late)
	requireEqual(t, "events", got, []capacity.Event{capacity.Expired{ReservationID: "b1", At: late, Booking: "b1"}})
	if got := p.LapsedBookings(late); got != nil {
		t.Fatalf("lapsed bookings after expiry = %v", got)
	}
}

func TestBookingConfirmReleaseExtend(t *testing.T) {
	p := given(t, now(slot()))
	mustDo(t, p, bookingPart("b1", 4, time.Minute, t0), t0)
	got := mustDo(t, p, capacity.ExtendBooking{BookingID: "b1", TTL: 3 * time.Minute, ExpiresAt: t0.Add(3 * time.Minute)}, t0)
	requireEqual(t, "extend", got, []capacity.Event{capacity.Extended{ReservationID: "b1", TTL: 3 * time.Minute, ExpiresAt: t0.Add(3 * time.Minute), At: t0, Booking: "b1"}})
	at := t0.Add(2 * time.Minute) // past the first deadline, before the new one
	got = mustDo(t, p, capacity.ConfirmBooking{BookingID: "b1"}, at)
	requireEqual(t, "confirm", got, []capacity.Event{capacity.Confirmed{ReservationID: "b1", At: at, Booking: "b1"}})
	if ev, err := capacity.Decide(p, capacity.ConfirmBooking{BookingID: "b1"}, at); err != nil || ev != nil {
		t.Fatalf("confirm again = %v, %v", ev, err)
	}
	got = mustDo(t, p, capacity.ReleaseBooking{BookingID: "b1"}, at)
	requireEqual(t, "release", got, []capacity.Event{capacity.Released{ReservationID: "b1", At: at, Booking: "b1"}})
	if ev, err := capacity.Decide(p, capacity.ReleaseBooking{BookingID: "b1"}, at); err != nil || ev != nil {
		t.Fatalf("release again = %v, %v", ev, err)
	}
	mustRefuse(t, p, capacity.ConfirmBooking{BookingID: "b1"}, at, capacity.ECONFLICT)
}
