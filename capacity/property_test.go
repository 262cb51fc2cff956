package capacity_test

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/capacityd/capacityd/capacity"
)

// reservationIDs is small so that ids repeat: retries, conflicts, confirms
// and releases of holds that exist.
var reservationIDs = []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}

// bookingIDs name bookings; "a" is also a plain reservation's id.
var bookingIDs = []string{"B1", "B2", "B3", "a"}

var ttls = []time.Duration{time.Second, 30 * time.Second, 90 * time.Second, 5 * time.Minute, 20 * time.Minute}

// zones are the clocks callers decide with: Decide must not care.
var zones = []*time.Location{time.UTC, time.FixedZone("CEST", 2*3600), time.FixedZone("EST", -5*3600)}

// commandFor draws a command for pool p, defined (or not yet) as def says.
func commandFor(p *capacity.Pool, def capacity.DefinePool) *rapid.Generator[capacity.Command] {
	return rapid.Custom(func(t *rapid.T) capacity.Command {
		kind := rapid.IntRange(0, 27).Draw(t, "kind")
		if !p.Defined() && kind < 16 {
			return def
		}
		switch {
		case kind == 0:
			if rapid.IntRange(0, 3).Draw(t, "define-other") == 0 {
				other := def
				other.Capacity++
				return other
			}
			return def
		case kind <= 2:
			var c capacity.ChangePool
			if rapid.Bool().Draw(t, "change-capacity") {
				c.Capacity = ptr(rapid.IntRange(0, 25).Draw(t, "capacity"))
			}
			if rapid.IntRange(0, 3).Draw(t, "change-overbook") == 0 {
				c.Overbook = ptr(rapid.IntRange(0, 4).Draw(t, "overbook"))
			}
			c.Status = rapid.SampledFrom([]capacity.Status{"", capacity.Open, capacity.Closed}).Draw(t, "status")
			switch rapid.IntRange(0, 3).Draw(t, "if-version") {
			case 1:
				c.IfVersion = ptr(p.Version)
			case 2:
				c.IfVersion = ptr(p.Version - 1)
			}
			return c
		case kind <= 11:
			id := rapid.SampledFrom(reservationIDs).Draw(t, "id")
			if r := p.Reservations[id]; r != nil && rapid.Bool().Draw(t, "retry") {
				return capacity.Hold{ReservationID: id, Quantity: r.Quantity, TTL: r.TTL}
			}
			return capacity.Hold{
				ReservationID: id,
				Quantity:      (rapid.IntRange(0, 12).Draw(t, "quantity") + 1) / 2, // 0 (invalid) now and then
				TTL:           rapid.SampledFrom(ttls).Draw(t, "ttl"),
			}
		case kind <= 14:
			// Now and then fewer units than held (or more: refused).
			return capacity.Confirm{ReservationID: rapid.SampledFrom(reservationIDs).Draw(t, "id"),
				Quantity: rapid.SampledFrom([]int{0, 0, 1, 2, 3}).Draw(t, "confirm-quantity")}
		case kind <= 16:
			return capacity.Release{ReservationID: rapid.SampledFrom(reservationIDs).Draw(t, "id")}
		case kind <= 18:
			return capacity.Expire{}
		case kind == 20:
			return capacity.Extend{ReservationID: rapid.SampledFrom(reservationIDs).Draw(t, "id"), TTL: rapid.SampledFrom(ttls).Draw(t, "ttl")}
		case kind <= 23:
			// A booking's part: ids that may clash with plain holds ("a").
			id := rapid.SampledFrom(bookingIDs).Draw(t, "booking")
			ttl := rapid.SampledFrom(ttls).Draw(t, "ttl")
			items := []capacity.BookingItem{{Pool: "other", Quantity: 1}, {Pool: def.Pool, Quantity: rapid.IntRange(1, 6).Draw(t, "quantity")}}
			if r := p.Reservations[id]; r != nil && r.Booking != "" && rapid.Bool().Draw(t, "retry") {
				items, ttl = r.Items, r.TTL
			}
			// The booking's clock may be behind the pool's (another writer).
			at := p.TimeAt(t0).Add(time.Duration(rapid.Int64Range(-int64(time.Minute), int64(time.Minute)).Draw(t, "booking-clock")))
			return capacity.HoldBooking{Book: capacity.Book{BookingID: id, Items: items, TTL: ttl}, ExpiresAt: at.Add(ttl)}
		case kind == 24:
			return capacity.ConfirmBooking{BookingID: rapid.SampledFrom(bookingIDs).Draw(t, "booking")}
		case kind == 25:
			return capacity.ReleaseBooking{BookingID: rapid.SampledFrom(bookingIDs).Draw(t, "booking")}
		case kind == 26:
			return capacity.ExpireBooking{BookingID: rapid.SampledFrom(bookingIDs).Draw(t, "booking")}
		case kind == 27:
			ttl := rapid.SampledFrom(ttls).Draw(t, "ttl")
			return capacity.ExtendBooking{BookingID: rapid.SampledFrom(bookingIDs).Draw(t, "booking"), TTL: ttl, ExpiresAt: p.TimeAt(t0).Add(ttl)}
		}
		return capacity.Read{}
	})
}

// run is one generated history: the live pool, evolved command by command
// as the writer does, and every event it recorded.
type run struct {
	t       *rapid.T
	live    *capacity.Pool
	history []capacity.Event
	holds   map[string]capacity.Hold // accepted holds by id
	cut     bool                     // capacity or overbook was cut at some point
}

func TestPoolProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		def := capacity.DefinePool{
			Pool: "p", Region: "ams", Kind: "delivery",
			StartsAt: t0.Add(time.Hour),
			EndsAt:   t0.Add(time.Hour + rapid.SampledFrom([]time.Duration{time.Minute, 3 * time.Hour, 3 * time.Hour, 6 * time.Hour}).Draw(t, "window")),
			Capacity: rapid.IntRange(0, 20).Draw(t, "capacity"),
			Overbook: rapid.IntRange(0, 3).Draw(t, "overbook"),
		}
		r := &run{t: t, live: &capacity.Pool{}, holds: map[string]capacity.Hold{}}
		now := t0
		for range rapid.IntRange(1, 100).Draw(t, "batches") {
			now = now.Add(time.Duration(rapid.Int64Range(0, int64(3*time.Minute)).Draw(t, "dt")))
			r.batch(now.In(rapid.SampledFrom(zones).Draw(t, "zone")), def)
		}
		r.checkReplay()
		r.checkSnapshotAndTail(now, def)
	})
}

// batch decides a few commands at one instant and evolves the pool as the
// writer does: directly with their sequences, or with seq 0 and Stamp after.
func (r *run) batch(at time.Time, def capacity.DefinePool) {
	t, live := r.t, r.live
	size := rapid.IntRange(1, 3).Draw(t, "batch-size")
	stampLater := size > 1 || rapid.Bool().Draw(t, "stamp-later")
	var pending []capacity.Event
	for range size {
		cmd := commandFor(live, def).Draw(t, "cmd")
		before := live.FiguresAt(at)
		prior := live.Reservation(reservationOf(cmd))
		events, err := capacity.Decide(live, cmd, at)
		if err != nil {
			switch code := capacity.ErrorCode(err); code {
			case capacity.EINTERNAL:
				t.Fatalf("Decide(%#v) = %v", cmd, err)
			case capacity.EUNAVAILABLE:
				switch cmd.(type) {
				case capacity.HoldBooking, capacity.ExtendBooking: // a deadline already past for the pool
				default:
					t.Fatalf("Decide(%#v) = %v", cmd, err)
				}
			}
			if events != nil {
				t.Fatalf("Decide(%#v) refused (%v) with events %v", cmd, err, events)
			}
		}
		switch c := cmd.(type) {
		case capacity.Hold:
			r.checkHoldDecision(c, prior, before, at, events, err)
		case capacity.HoldBooking:
			// A part is refused exactly when its pool's item does not fit
			// (or for the same reasons as a hold), and never lapses at once.
			if err == nil && len(events) == 1 {
				h := events[0].(capacity.Held)
				if h.Quantity > before.Available || !h.ExpiresAt.After(h.At) || h.Booking != c.BookingID {
					t.Fatalf("booking part %#v with %+v = %#v", c, before, h)
				}
			}
			if capacity.ErrorCode(err) == capacity.EINSUFFICIENT && prior == nil && live.Status == capacity.Open && c.Items[1].Quantity <= before.Available {
				t.Fatalf("booking part %#v refused with %+v available: %v", c, before, err)
			}
			if err != nil && capacity.ErrorPool(err) != live.ID && live.Defined() {
				t.Fatalf("booking part refusal %v does not name the pool", err)
			}
		case capacity.Expire:
			for _, e := range events {
				if live.Reservations[capacity.ReservationID(e)].Booking != "" {
					t.Fatalf("the sweeper expired a booking's part alone: %#v", e)
				}
			}
		case capacity.ChangePool:
			// If-Match holds iff nothing was written, even in this batch,
			// since the version it names.
			if c.IfVersion != nil && live.Defined() && c.Validate() == nil {
				if current := *c.IfVersion == uint64(len(r.history)); current != (capacity.ErrorCode(err) != capacity.EPRECONDITION) {
					t.Fatalf("ChangePool if version %d after %d events = %v", *c.IfVersion, len(r.history), err)
				}
			}
		}
		for _, e := range events {
			// (d) Every event reads back from its encoding exactly as decided.
			if back, err := decodeEncoded(e); err != nil {
				t.Fatal(err)
			} else if !reflect.DeepEqual(back, e) {
				t.Fatalf("decoded %#v, want %#v", back, e)
			}
			if c, ok := e.(capacity.CapacityChanged); ok && c.To < c.From {
				r.cut = true
			}
			if c, ok := e.(capacity.OverbookChanged); ok && c.To < c.From {
				r.cut = true
			}
			if stampLater {
				live.Evolve(e, 0)
				pending = append(pending, e)
			} else {
				live.Evolve(e, uint64(len(r.history)+1))
			}
			r.history = append(r.history, e)
			if _, ok := e.(capacity.Held); ok {
				// (a) A hold is only written when it fits at decision time.
				if f := live.FiguresAt(at); f.Held+f.Confirmed > live.Limit() || f.OverCapacity {
					t.Fatalf("after %#v at %s: figures %+v over limit %d", e, at, f, live.Limit())
				}
			}
		}
		if err == nil {
			if h, ok := cmd.(capacity.Hold); ok {
				r.holds[h.ReservationID] = h
			}
		}
	}
	first := uint64(len(r.history) - len(pending) + 1)
	for i, e := range pending {
		live.Stamp(e, first+uint64(i))
	}
	if got, want := live.Version, uint64(len(r.history)); got != want {
		t.Fatalf("version = %d, want %d", got, want)
	}

	f := live.FiguresAt(at)
	if m := modelFigures(live, at); f != m {
		t.Fatalf("figures at %s = %+v, model %+v", at, f, m)
	}
	if f.OverCapacity && !r.cut {
		t.Fatalf("over capacity at %s (%+v) without a capacity cut", at, f)
	}
	// (e) An accepted hold, sent again, is always answered as done.
	for _, id := range slices.Sorted(maps.Keys(r.holds)) {
		h := r.holds[id]
		if events, err := capacity.Decide(live, h, at); err != nil || events != nil {
			t.Fatalf("retried %#v at %s = %v, %v; want no events, no error", h, at, events, err)
		}
	}
}

// checkHoldDecision checks a hold decision against the rules, with the
// figures before it as the model of what fits.
func (r *run) checkHoldDecision(h capacity.Hold, prior *capacity.Reservation, before capacity.Figures, at time.Time, events []capacity.Event, err error) {
	t, live := r.t, r.live
	code := capacity.ErrorCode(err)
	switch {
	case h.Quantity < 1:
		if code != capacity.EINVALID {
			t.Fatalf("hold of %d = %v", h.Quantity, err)
		}
	case !live.Defined():
		if code != capacity.ENOTFOUND {
			t.Fatalf("hold on undefined pool = %v", err)
		}
	case prior != nil:
		held := prior.Quantity
		if prior.HeldQuantity > 0 {
			held = prior.HeldQuantity
		}
		same := prior.Booking == "" && held == h.Quantity && prior.TTL == h.TTL
		if same && (err != nil || events != nil) || !same && code != capacity.ECONFLICT {
			t.Fatalf("hold %#v again (was %+v) = %v, %v", h, prior, events, err)
		}
	case live.Status == capacity.Closed || !at.Before(live.EndsAt):
		if code != capacity.ECLOSED {
			t.Fatalf("hold on closed pool or after the window = %v", err)
		}
	case h.Quantity > before.Available:
		if code != capacity.EINSUFFICIENT {
			t.Fatalf("hold of %d with %+v = %v, %v; want %s", h.Quantity, before, events, err, capacity.EINSUFFICIENT)
		}
	default:
		want := []capacity.Event{capacity.Held{ReservationID: h.ReservationID, Quantity: h.Quantity, TTL: h.TTL,
			ExpiresAt: at.UTC().Add(h.TTL), At: at.UTC()}}
		if err != nil || !reflect.DeepEqual(events, want) {
			t.Fatalf("hold of %d with %+v = %v, %v; want %v", h.Quantity, before, events, err, want)
		}
	}
}

// checkReplay folds the history, as read back from its encoding, into a
// fresh pool: (b) it must be the live pool.
func (r *run) checkReplay() {
	replayed := r.replay(&capacity.Pool{}, r.history, 1)
	if err := samePool(replayed, r.live); err != nil {
		r.t.Fatalf("replay differs from live pool: %v", err)
	}
}

// checkSnapshotAndTail checks (c): a snapshot at a random cut plus the
// events after it is the full replay, and both decide alike from then on.
func (r *run) checkSnapshotAndTail(now time.Time, def capacity.DefinePool) {
	t := r.t
	k := rapid.IntRange(0, len(r.history)).Draw(t, "cut")
	head := r.replay(&capacity.Pool{}, r.history[:k], 1)
	data, err := head.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := capacity.UnmarshalSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := samePool(restored, head); err != nil {
		t.Fatalf("snapshot at %d differs from its pool: %v", k, err)
	}
	tail := r.replay(restored, r.history[k:], uint64(k+1))
	full := r.replay(&capacity.Pool{}, r.history, 1)
	if err := samePool(tail, full); err != nil {
		t.Fatalf("snapshot at %d + tail differs from full replay: %v", k, err)
	}
	for range 5 {
		at := now.Add(time.Duration(rapid.Int64Range(-int64(time.Hour), int64(time.Hour)).Draw(t, "later")))
		cmd := commandFor(full, def).Draw(t, "cmd-after")
		fe, ferr := capacity.Decide(full, cmd, at)
		te, terr := capacity.Decide(tail, cmd, at)
		if !reflect.DeepEqual(fe, te) || capacity.ErrorCode(ferr) != capacity.ErrorCode(terr) {
			t.Fatalf("Decide(%#v) at %s: full replay %v, %v; snapshot+tail %v, %v", cmd, at, fe, ferr, te, terr)
		}
	}
}

// replay folds events read back from their encoding into p, the first at
// sequence first.
func (r *run) replay(p *capacity.Pool, events []capacity.Event, first uint64) *capacity.Pool {
	for i, e := range events {
		back, err := decodeEncoded(e)
		if err != nil {
			r.t.Fatal(err)
		}
		p.Evolve(back, first+uint64(i))
	}
	return p
}

func decodeEncoded(e capacity.Event) (capacity.Event, error) {
	data, err := capacity.Encode(e)
	if err != nil {
		return nil, fmt.Errorf("Encode(%#v): %v", e, err)
	}
	back, err := capacity.Decode(e.EventType(), capacity.SchemaVersion, data)
	if err != nil {
		return nil, fmt.Errorf("Decode(%s): %v", data, err)
	}
	return back, nil
}

func reservationOf(cmd capacity.Command) string {
	switch c := cmd.(type) {
	case capacity.Hold:
		return c.ReservationID
	case capacity.Confirm:
		return c.ReservationID
	case capacity.Release:
		return c.ReservationID
	}
	return ""
}
