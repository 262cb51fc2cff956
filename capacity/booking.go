package capacity

import (
	"cmp"
	"slices"
	"time"
)

// Bookings: one order's holds in several pools, all or nothing.
//
// A booking is not an aggregate of its own: in each of its pools it is an
// ordinary reservation whose id is the booking id, written by a Held event
// that names the booking and carries all its items. The commands below are
// one pool's part of a booking command; the write side (capacity/pools)
// decides the part in every pool of the booking against states at known
// versions and stores all the parts' events as one atomic batch, or none.
// The rules of a part:
//
//   - HoldBooking holds the pool's item like a Hold (open pool, window not
//     ended, must fit), with the deadline the booking chose, so every part
//     lapses at the same instant. The same booking again (same items, same
//     ttl) changes nothing; the id taken by anything else is a conflict.
//   - ConfirmBooking, ReleaseBooking and ExtendBooking are Confirm, Release
//     and Extend of the booking's reservation (all its units; the extension
//     with the deadline the booking chose). A reservation with the id that
//     is not this booking's is a conflict.
//   - ExpireBooking writes Expired for the booking's hold once it lapsed,
//     and nothing otherwise: the booking's write-side path runs it over all
//     the parts at once, never the per-pool sweeper.

// MaxBookingItems is the most pools one booking may hold in.
const MaxBookingItems = 16

// BookingItem is the units a booking holds in one pool.
type BookingItem struct {
	Pool     string `json:"pool"`
	Quantity int    `json:"quantity"`
}

// Book is a booking as a client asks for it: the units of each of 1 to
// MaxBookingItems distinct pools, held together until now + TTL.
type Book struct {
	BookingID string
	Items     []BookingItem
	TTL       time.Duration
}

// Validate checks the booking on its own: a valid id, 1 to MaxBookingItems
// items of valid, distinct pools and quantities in range, a TTL in range.
func (b Book) Validate() error {
	if err := checkID("booking_id", b.BookingID); err != nil {
		return err
	}
	if len(b.Items) == 0 || len(b.Items) > MaxBookingItems {
		return Errorf(EINVALID, "a booking has 1 to %d items", MaxBookingItems)
	}
	seen := make(map[string]bool, len(b.Items))
	for _, it := range b.Items {
		if err := checkID("pool id", it.Pool); err != nil {
			return err
		}
		if seen[it.Pool] {
			return Errorf(EINVALID, "pool %s appears twice in the booking", it.Pool)
		}
		seen[it.Pool] = true
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			return Errorf(EINVALID, "quantity must be between 1 and %d", MaxQuantity)
		}
	}
	return checkTTL(b.TTL)
}

// SameItems reports whether two item lists name the same units in the same
// pools, in any order.
func SameItems(a, b []BookingItem) bool {
	if len(a) != len(b) {
		return false
	}
	sa, sb := SortedItems(a), SortedItems(b)
	return slices.Equal(sa, sb)
}

// SortedItems returns a copy of items sorted by pool id: the order in
// which the write side takes the pools of a booking.
func SortedItems(items []BookingItem) []BookingItem {
	s := slices.Clone(items)
	slices.SortFunc(s, func(a, b BookingItem) int { return cmp.Compare(a.Pool, b.Pool) })
	return s
}

// HoldBooking is one pool's part of a Book: hold this pool's item until
// ExpiresAt, the deadline the whole booking shares.
type HoldBooking struct {
	Book
	ExpiresAt time.Time
}

// ConfirmBooking is one pool's part of confirming a booking.
type ConfirmBooking struct{ BookingID string }

// ReleaseBooking is one pool's part of releasing a booking.
type ReleaseBooking struct{ BookingID string }

// ExtendBooking is one pool's part of extending a booking's holds: the new
// deadline ExpiresAt (the booking's now + TTL) in every pool.
type ExtendBooking struct {
	BookingID string
	TTL       time.Duration
	ExpiresAt time.Time
}

// ExpireBooking is one pool's part of expiring a booking's lapsed holds.
type ExpireBooking struct{ BookingID string }

// Validate implements Command.
func (c HoldBooking) Validate() error {
	if c.ExpiresAt.IsZero() {
		return Errorf(EINVALID, "a booking's part needs its deadline")
	}
	return c.Book.Validate()
}

// Validate implements Command.
func (c ConfirmBooking) Validate() error { return checkID("booking id", c.BookingID) }

// Validate implements Command.
func (c ReleaseBooking) Validate() error { return checkID("booking id", c.BookingID) }

// Validate implements Command.
func (c ExtendBooking) Validate() error {
	if err := checkID("booking id", c.BookingID); err != nil {
		return err
	}
	if c.ExpiresAt.IsZero() {
		return Errorf(EINVALID, "a booking's part needs its deadline")
	}
	return checkTTL(c.TTL)
}

// Validate implements Command.
func (c ExpireBooking) Validate() error { return checkID("booking id", c.BookingID) }

// refuse names the pool in a part's refusal, so the booking can say which
// of its pools refused.
func refuse(p *Pool, err *Error) *Error {
	err.Pool = p.ID
	return err
}

func decideHoldBooking(p *Pool, c HoldBooking, now time.Time) ([]Event, error) {
	i := slices.IndexFunc(c.Items, func(it BookingItem) bool { return it.Pool == p.ID })
	if i < 0 {
		return nil, refuse(p, Errorf(EINVALID, "booking %s has no item for pool %s", c.BookingID, p.ID))
	}
	quantity := c.Items[i].Quantity
	if r := p.Reservation(c.BookingID); r != nil {
		if r.Booking == c.BookingID && r.TTL == c.TTL && SameItems(r.Items, c.Items) {
			return nil, nil
		}
		return nil, refuse(p, Errorf(ECONFLICT, "reservation %s exists with other content", c.BookingID))
	}
	switch {
	case p.Status == Closed:
		return nil, refuse(p, Errorf(ECLOSED, "pool %s is closed", p.ID))
	case !now.Before(p.EndsAt):
		return nil, refuse(p, Errorf(ECLOSED, "pool %s window ended at %s", p.ID, p.EndsAt.Format(time.RFC3339)))
	case !c.ExpiresAt.After(now):
		// Only a pool whose recorded time is ahead of the booking's clock
		// by a whole TTL gets here.
		return nil, refuse(p, Errorf(EUNAVAILABLE, "pool %s has recorded time past the booking's deadline", p.ID))
	}
	if p.heldUnits+p.confirmedUnits+quantity > p.Limit() && p.usedUnits(now)+quantity > p.Limit() {
		return nil, refuse(p, Errorf(EINSUFFICIENT, "pool %s: %d units requested, %d available", p.ID, quantity, max(0, p.Limit()-p.usedUnits(now))))
	}
	return []Event{Held{
		ReservationID: c.BookingID, Quantity: quantity, TTL: c.TTL, ExpiresAt: c.ExpiresAt.UTC(), At: now,
		Booking: c.BookingID, Items: slices.Clone(c.Items),
	}}, nil
}

// bookingPart returns the booking's reservation in p.
func bookingPart(p *Pool, id string) (*Reservation, error) {
	r := p.Reservation(id)
	if r == nil {
		return nil, refuse(p, Errorf(ENOTFOUND, "booking %s not found in pool %s", id, p.ID))
	}
	if r.Booking != id {
		return nil, refuse(p, Errorf(ECONFLICT, "reservation %s in pool %s is not a booking", id, p.ID))
	}
	return r, nil
}

func decideConfirmBooking(p *Pool, c ConfirmBooking, now time.Time) ([]Event, error) {
	r, err := bookingPart(p, c.BookingID)
	if err != nil {
		return nil, err
	}
	events, err := confirmEvents(r, 0, c.BookingID, now)
	if e, ok := err.(*Error); ok {
		err = refuse(p, e)
	}
	return events, err
}

func decideReleaseBooking(p *Pool, c ReleaseBooking, now time.Time) ([]Event, error) {
	r, err := bookingPart(p, c.BookingID)
	if err != nil {
		return nil, err
	}
	return releaseEvents(r, c.BookingID, now), nil
}

func decideExtendBooking(p *Pool, c ExtendBooking, now time.Time) ([]Event, error) {
	r, err := bookingPart(p, c.BookingID)
	if err != nil {
		return nil, err
	}
	if !c.ExpiresAt.After(now) {
		return nil, refuse(p, Errorf(EUNAVAILABLE, "pool %s has recorded time past the booking's deadline", p.ID))
	}
	events, err := extendEvents(p, r, c.TTL, c.ExpiresAt.UTC(), c.BookingID, now)
	if e, ok := err.(*Error); ok {
		err = refuse(p, e)
	}
	return events, err
}

func decideExpireBooking(p *Pool, c ExpireBooking, now time.Time) ([]Event, error) {
	r := p.Reservation(c.BookingID)
	if r == nil || r.Booking != c.BookingID || r.StatusAt(now) != StatusExpired || r.Status != StatusHeld {
		return nil, nil
	}
	return []Event{Expired{ReservationID: r.ID, At: now, Booking: c.BookingID}}, nil
}
