package web

import (
	"bytes"
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
}

func reservationOf(pool string, res capacity.Reservation, now time.Time) reservationJSON {
	return reservationJSON{
		ReservationID: res.ID, Pool: pool, Quantity: res.Quantity, Status: string(res.StatusAt(now)),
		ExpiresAt: res.ExpiresAt.UTC(), Version: res.Version, HeldAt: res.HeldAt.UTC(), TTL: res.TTL.String(),
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
func (h holdRequest) ttl() (time.Duration, string) {
	if h.TTL == nil {
		return capacity.DefaultTTL, ""
	}
	d, err := time.ParseDuration(*h.TTL)
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

// emptyRequest is the body of confirm and release: none, or an empty JSON
// object.
type emptyRequest struct{}

// Valid implements validator.
func (emptyRequest) Valid(context.Context) map[string]string { return nil }

// decodeOptional decodes a body that may be absent: no body (or only white
// space) is the zero value; anything else must be JSON of type T, with the
// same Content-Type checks and strictness as decode.
func decodeOptional[T validator](r *http.Request) (T, error) {
	var zero T
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return zero, nil
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return zero, decodeError(err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return zero, nil
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	return decode[T](r)
}

// handleReservationCommand serves confirm and release: commands on one
// reservation, idempotent. They take no body; one that is sent must be an
// empty JSON object.
func handleReservationCommand(p Pools, now func() time.Time, command func(id string) capacity.Command) http.HandlerFunc {
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
		if _, err := decodeOptional[emptyRequest](r); err != nil {
			Error(w, r, err)
			return
		}
		res, err := p.Execute(r.Context(), pool, command(id))
		if err != nil {
			Error(w, r, err)
			return
		}
		encodeResult(w, r, http.StatusOK, pool, res, now())
	}
}

func handleConfirm(p Pools, now func() time.Time) http.HandlerFunc {
	return handleReservationCommand(p, now, func(id string) capacity.Command { return capacity.Confirm{ReservationID: id} })
}

func handleRelease(p Pools, now func() time.Time) http.HandlerFunc {
	return handleReservationCommand(p, now, func(id string) capacity.Command { return capacity.Release{ReservationID: id} })
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
