package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
)

// bookingJSON is the booking object of docs/API.md, plus its ttl and, as
// position, the highest version of its items (a valid min_position).
type bookingJSON struct {
	BookingID string            `json:"booking_id"`
	Status    string            `json:"status"`
	ExpiresAt time.Time         `json:"expires_at"`
	TTL       string            `json:"ttl"`
	Items     []bookingItemJSON `json:"items"`
	Position  uint64            `json:"position"`
}

type bookingItemJSON struct {
	Pool     string `json:"pool"`
	Quantity int    `json:"quantity"`
	Version  uint64 `json:"version"`
}

func bookingOf(b pools.Booking, now time.Time) bookingJSON {
	out := bookingJSON{BookingID: b.ID, Status: string(b.Status), ExpiresAt: b.ExpiresAt.UTC(), TTL: b.TTL.String(),
		Items: make([]bookingItemJSON, len(b.Items)), Position: b.Position()}
	if b.Status == capacity.StatusHeld && !now.Before(b.ExpiresAt) {
		out.Status = string(capacity.StatusExpired) // lapsed, Expired not written yet
	}
	for i, it := range b.Items {
		out.Items[i] = bookingItemJSON{Pool: it.Pool, Quantity: it.Quantity, Version: it.Version}
	}
	return out
}

// bookRequest is the body of POST /v1/bookings.
type bookRequest struct {
	BookingID string            `json:"booking_id"`
	Items     []bookItemRequest `json:"items"`
	TTL       *string           `json:"ttl"`
}

type bookItemRequest struct {
	Pool     string `json:"pool"`
	Quantity *int   `json:"quantity"`
}

// Valid implements validator.
func (b bookRequest) Valid(context.Context) map[string]string {
	problems := make(map[string]string)
	if !capacity.ValidID(b.BookingID) {
		problems["booking_id"] = "required, 1-64 characters of [A-Za-z0-9_-]"
	}
	if len(b.Items) == 0 || len(b.Items) > capacity.MaxBookingItems {
		problems["items"] = fmt.Sprintf("1 to %d items required", capacity.MaxBookingItems)
	}
	seen := make(map[string]bool, len(b.Items))
	for i, it := range b.Items {
		field := "items[" + strconv.Itoa(i) + "]"
		switch {
		case !capacity.ValidID(it.Pool):
			problems[field+".pool"] = "required, 1-64 characters of [A-Za-z0-9_-]"
		case seen[it.Pool]:
			problems[field+".pool"] = "a pool may appear once in a booking"
		}
		seen[it.Pool] = true
		switch {
		case it.Quantity == nil:
			problems[field+".quantity"] = "required"
		case *it.Quantity < 1 || *it.Quantity > capacity.MaxQuantity:
			problems[field+".quantity"] = fmt.Sprintf("must be between 1 and %d", capacity.MaxQuantity)
		}
	}
	if _, problem := ttlOf(b.TTL); problem != "" {
		problems["ttl"] = problem
	}
	return problems
}

func (b bookRequest) book() capacity.Book {
	ttl, _ := ttlOf(b.TTL)
	out := capacity.Book{BookingID: b.BookingID, TTL: ttl, Items: make([]capacity.BookingItem, len(b.Items))}
	for i, it := range b.Items {
		out.Items[i] = capacity.BookingItem{Pool: it.Pool, Quantity: *it.Quantity}
	}
	return out
}

func handleBook(p Pools, now func() time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[bookRequest](r)
		if err != nil {
			Error(w, r, err)
			return
		}
		b, err := p.Book(r.Context(), req.book())
		if err != nil {
			Error(w, r, err)
			return
		}
		status := http.StatusOK
		if b.Written {
			status = http.StatusCreated
			w.Header().Set("Location", "/v1/bookings/"+b.ID)
		}
		encode(w, r, status, bookingOf(b, now()))
	}
}

// bookingItems finds a booking's items: remembered by the write side if
// it wrote the booking, else from the reservation read model (the Held
// event of any of its pools), once that has reached min_position.
func bookingItems(ctx context.Context, r *http.Request, p Pools, l ReservationLookup, id string, now time.Time) ([]capacity.BookingItem, error) {
	minPos, err := minPositionParam(r.URL.Query())
	if err != nil {
		return nil, err
	}
	if items, ok := p.KnownBooking(id); ok {
		return items, nil
	}
	if l == nil {
		return nil, capacity.Errorf(capacity.EUNAVAILABLE, "the reservation read model is not running")
	}
	wctx, cancel := context.WithTimeout(ctx, MaxMinPositionWait)
	defer cancel()
	matches, position, err := l.LookupReservation(wctx, id, minPos, now)
	if err != nil {
		return nil, err
	}
	for _, m := range matches {
		if m.Booking == id && len(m.Items) > 0 {
			return m.Items, nil
		}
	}
	return nil, capacity.Errorf(capacity.ENOTFOUND, "no booking %s (read model at position %d; pass min_position to wait for a booking made elsewhere)", id, position.Position())
}

// handleBookingCommand serves GET, confirm, release and extend of a booking.
func handleBookingCommand(p Pools, l ReservationLookup, now func() time.Time,
	op func(ctx context.Context, r *http.Request, id string, items []capacity.BookingItem) (pools.Booking, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := idParam(r, "id")
		if err != nil {
			Error(w, r, err)
			return
		}
		items, err := bookingItems(r.Context(), r, p, l, id, now())
		if err != nil {
			Error(w, r, err)
			return
		}
		b, err := op(r.Context(), r, id, items)
		if err != nil {
			Error(w, r, err)
			return
		}
		encode(w, r, http.StatusOK, bookingOf(b, now()))
	}
}

func handleGetBooking(p Pools, l ReservationLookup, now func() time.Time) http.HandlerFunc {
	return handleBookingCommand(p, l, now, func(ctx context.Context, _ *http.Request, id string, items []capacity.BookingItem) (pools.Booking, error) {
		return p.Booking(ctx, id, items)
	})
}

func handleConfirmBooking(p Pools, l ReservationLookup, now func() time.Time) http.HandlerFunc {
	return handleBookingCommand(p, l, now, func(ctx context.Context, r *http.Request, id string, items []capacity.BookingItem) (pools.Booking, error) {
		if _, err := decodeOptional[emptyRequest](r); err != nil {
			return pools.Booking{}, err
		}
		return p.ConfirmBooking(ctx, id, items)
	})
}

func handleReleaseBooking(p Pools, l ReservationLookup, now func() time.Time) http.HandlerFunc {
	return handleBookingCommand(p, l, now, func(ctx context.Context, r *http.Request, id string, items []capacity.BookingItem) (pools.Booking, error) {
		if _, err := decodeOptional[emptyRequest](r); err != nil {
			return pools.Booking{}, err
		}
		return p.ReleaseBooking(ctx, id, items)
	})
}

func handleExtendBooking(p Pools, l ReservationLookup, now func() time.Time) http.HandlerFunc {
	return handleBookingCommand(p, l, now, func(ctx context.Context, r *http.Request, id string, items []capacity.BookingItem) (pools.Booking, error) {
		req, err := decode[extendRequest](r)
		if err != nil {
			return pools.Booking{}, err
		}
		ttl, _ := ttlOf(req.TTL)
		return p.ExtendBooking(ctx, id, ttl, items)
	})
}

// emptyRequest is a body that may only be an empty object (or absent).
type emptyRequest struct{}

// Valid implements validator.
func (emptyRequest) Valid(context.Context) map[string]string { return nil }
