package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
)

// reservationJSON is the reservation object of docs/API.md, plus held_at, ttl
// and, on writes, the pool's version after the write.
type reservationJSON struct {
	ReservationID string    `json:"reservation_id"`
	Pool          string    `json:"pool"`
	Quantity      int       `json:"quantity"`
	Status        string    `json:"status"`
	ExpiresAt     time.Time `json:"expires_at"`
	Version       uint64    `json:"version"`
	HeldAt        time.Time `json:"held_at"`
	TTL           string    `json:"ttl"`
	PoolVersion   uint64    `json:"pool_version,omitempty"`
	// HeldQuantity is the units first held, when a partial confirmation
	// kept fewer (quantity).
	HeldQuantity int `json:"held_quantity,omitempty"`
	// Booking names the booking the reservation is one pool's part of,
	// with the booking's items: its other pools.
	Booking string                 `json:"booking,omitempty"`
	Items   []capacity.BookingItem `json:"items,omitempty"`
}

func reservationOf(pool string, res capacity.Reservation, now time.Time) reservationJSON {
	return reservationJSON{
		ReservationID: res.ID, Pool: pool, Quantity: res.Quantity, Status: string(res.StatusAt(now)),
		ExpiresAt: res.ExpiresAt.UTC(), Version: res.Version, HeldAt: res.HeldAt.UTC(), TTL: res.TTL.String(),
		HeldQuantity: res.HeldQuantity, Booking: res.Booking, Items: res.Items,
	}
}

// encodeResult writes the reservation a write concerned, with the pool's
// version after it.
func encodeResult(w http.ResponseWriter, r *http.Request, status int, pool string, res pools.Result, now time.Time) {
	if res.Reservation == nil {
		Error(w, r, errors.New("web: write result without its reservation"))
		return
	}
	out := reservationOf(pool, *res.Reservation, now)
	out.PoolVersion = res.Pool.Version
	encode(w, r, status, out)
}

// holdRequest holds units of a pool. TTL is a Go duration string.
type holdRequest struct {
	ReservationID string  `json:"reservation_id"`
	Quantity      *int    `json:"quantity"`
	TTL           *string `json:"ttl"`
}

// Valid implements validator.
func (h holdRequest) Valid(context.Context) map[string]string {
	problems := make(map[string]string)
	switch {
	case h.ReservationID == "":
		problems["reservation_id"] = "required, 1-64 characters of [A-Za-z0-9_-]"
	case !capacity.ValidID(h.ReservationID):
		problems["reservation_id"] = idProblemOf(h.ReservationID)
	}
	switch {
	case h.Quantity == nil:
		problems["quantity"] = "required"
	case *h.Quantity < 1 || *h.Quantity > capacity.MaxQuantity:
		problems["quantity"] = fmt.Sprintf("must be between 1 and %d", capacity.MaxQuantity)
	}
	if _, problem := h.ttl(); problem != "" {
		problems["ttl"] = problem
	}
	return problems
}

// ttl returns the requested TTL (default capacity.DefaultTTL) or a problem.
func (h holdRequest) ttl() (time.Duration, string) { return ttlOf(h.TTL) }

// ttlOf parses a requested TTL, a Go duration string (absent:
// capacity.DefaultTTL), or returns a problem.
func ttlOf(s *string) (time.Duration, string) {
	if s == nil {
		return capacity.DefaultTTL, ""
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		return 0, `must be a Go duration, e.g. "10m" or "90s"`
	}
	if d < capacity.MinTTL || d > capacity.MaxTTL {
		return 0, fmt.Sprintf("must be between %s and %s", capacity.MinTTL, capacity.MaxTTL)
	}
	return d, ""
}

func handleHold(p Pools, now func() time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pool, err := idParam(r, "pool")
		if err != nil {
			Error(w, r, err)
			return
		}
		if err := checkContentType(r); err != nil {
			Error(w, r, err)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			Error(w, r, decodeError(err))
			return
		}
		cmd, err := DecodeHold(r.Context(), body) // the fast path, or decode's strict one
		if err != nil {
			Error(w, r, err)
			return
		}
		res, err := p.Execute(r.Context(), pool, cmd)
		if err != nil {
			Error(w, r, err)
			return
		}
		status := http.StatusOK
		if res.Written {
			status = http.StatusCreated
			w.Header().Set("Location", "/v1/pools/"+pool+"/reservations/"+cmd.ReservationID)
		}
		encodeResult(w, r, status, pool, res, now())
	}
}

// handleReservationCommand serves confirm, release and extend: commands on
// one reservation, their bodies decoded by command.
func handleReservationCommand(p Pools, now func() time.Time, command func(r *http.Request, id string) (capacity.Command, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pool, err := idParam(r, "pool")
		if err != nil {
			Error(w, r, err)
			return
		}
		id, err := idParam(r, "id")
		if err != nil {
			Error(w, r, err)
			return
		}
		cmd, err := command(r, id)
		if err != nil {
			Error(w, r, err)
			return
		}
		res, err := p.Execute(r.Context(), pool, cmd)
		if err != nil {
			Error(w, r, err)
			return
		}
		encodeResult(w, r, http.StatusOK, pool, res, now())
	}
}

// confirmRequest is the optional body of a confirm: fewer units than held.
type confirmRequest struct {
	Quantity *int `json:"quantity"`
}

// Valid implements validator.
func (c confirmRequest) Valid(context.Context) map[string]string {
	if c.Quantity != nil && (*c.Quantity < 1 || *c.Quantity > capacity.MaxQuantity) {
		return map[string]string{"quantity": fmt.Sprintf("must be between 1 and %d (and at most the units held)", capacity.MaxQuantity)}
	}
	return nil
}

func handleConfirm(p Pools, now func() time.Time) http.HandlerFunc {
	return handleReservationCommand(p, now, func(r *http.Request, id string) (capacity.Command, error) {
		req, err := decodeOptional[confirmRequest](r)
		if err != nil {
			return nil, err
		}
		c := capacity.Confirm{ReservationID: id}
		if req.Quantity != nil {
			c.Quantity = *req.Quantity
		}
		return c, nil
	})
}

func handleRelease(p Pools, now func() time.Time) http.HandlerFunc {
	return handleReservationCommand(p, now, func(r *http.Request, id string) (capacity.Command, error) {
		if _, err := decodeOptional[emptyRequest](r); err != nil {
			return nil, err
		}
		return capacity.Release{ReservationID: id}, nil
	})
}

// extendRequest is the body of an extend: the new TTL, from now.
type extendRequest struct {
	TTL *string `json:"ttl"`
}

// Valid implements validator.
func (e extendRequest) Valid(context.Context) map[string]string {
	if e.TTL == nil {
		return map[string]string{"ttl": "required"}
	}
	if _, problem := ttlOf(e.TTL); problem != "" {
		return map[string]string{"ttl": problem}
	}
	return nil
}

func handleExtend(p Pools, now func() time.Time) http.HandlerFunc {
	return handleReservationCommand(p, now, func(r *http.Request, id string) (capacity.Command, error) {
		req, err := decode[extendRequest](r)
		if err != nil {
			return nil, err
		}
		ttl, _ := ttlOf(req.TTL)
		return capacity.Extend{ReservationID: id, TTL: ttl}, nil
	})
}

func handleGetReservation(p Pools, now func() time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pool, err := idParam(r, "pool")
		if err != nil {
			Error(w, r, err)
			return
		}
		id, err := idParam(r, "id")
		if err != nil {
			Error(w, r, err)
			return
		}
		res, err := p.Reservation(r.Context(), pool, id)
		if err != nil {
			Error(w, r, err)
			return
		}
		encode(w, r, http.StatusOK, reservationOf(pool, res, now()))
	}
}
