package web

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity/views"
)

// noReservations is a reservation read model that has seen nothing.
type noReservations struct{}

func (noReservations) LookupReservation(context.Context, string, views.MinPositions, time.Time) ([]views.ReservationMatch, views.Positions, error) {
	return nil, views.Positions{}, nil
}

func withLookup(l ReservationLookup) stackOption { return func(c *Config) { c.Reservations = l } }

func TestBookingsAPI(t *testing.T) {
	s := newStack(t, withLookup(noReservations{}))
	h := s.handler
	definePool(t, s, "slot", 2)
	definePool(t, s, "pick", 5)

	const body = `{"booking_id":"order-1","items":[{"pool":"slot","quantity":1},{"pool":"pick","quantity":3}],"ttl":"15m"}`
	res := do(t, h, req{method: "POST", path: "/v1/bookings", body: body})
	wantStatus(t, res, http.StatusCreated)
	if got, want := res.Header.Get("Location"), "/v1/bookings/order-1"; got != want {
		t.Fatalf("Location = %q", got)
	}
	b := res.JSON(t)
	if b["status"] != "held" || b["expires_at"] != epoch.Add(15*time.Minute).Format(time.RFC3339) {
		t.Fatalf("booking = %v", b)
	}
	items := b["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["pool"] != "slot" || items[1].(map[string]any)["quantity"] != 3.0 {
		t.Fatalf("items = %v", items)
	}
	// Idempotent; the id with another body conflicts.
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/bookings", body: body}), http.StatusOK)
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/bookings", body: `{"booking_id":"order-1","items":[{"pool":"slot","quantity":2}]}`}), 409, "conflict")

	// Each pool shows an ordinary reservation naming the booking.
	res = do(t, h, req{method: "GET", path: "/v1/pools/pick/reservations/order-1"})
	wantStatus(t, res, http.StatusOK)
	if r := res.JSON(t); r["booking"] != "order-1" || r["quantity"] != 3.0 || len(r["items"].([]any)) != 2 {
		t.Fatalf("reservation = %v", r)
	}
	// ... that moves only with the booking.
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/pick/reservations/order-1/confirm"}), 409, "conflict")

	// Short: refused naming the first pool short, nothing held anywhere.
	slotV, pickV := poolVersion(t, s, "slot"), poolVersion(t, s, "pick")
	p := wantProblem(t, do(t, h, req{method: "POST", path: "/v1/bookings",
		body: `{"booking_id":"order-2","items":[{"pool":"pick","quantity":1},{"pool":"slot","quantity":2}]}`}), 409, "insufficient-capacity")
	if p["pool"] != "slot" {
		t.Fatalf("problem = %v, want pool slot", p)
	}
	if poolVersion(t, s, "slot") != slotV || poolVersion(t, s, "pick") != pickV {
		t.Fatal("a refused booking moved a pool")
	}
	res = do(t, h, req{method: "GET", path: "/v1/pools/pick"})
	if got := res.JSON(t)["held"]; got != 3.0 {
		t.Fatalf("pick held = %v, want 3", got)
	}

	res = do(t, h, req{method: "GET", path: "/v1/bookings/order-1"})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t)["status"]; got != "held" {
		t.Fatalf("GET status = %v", got)
	}
	res = do(t, h, req{method: "POST", path: "/v1/bookings/order-1/extend", body: `{"ttl":"1h"}`})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t)["expires_at"]; got != epoch.Add(time.Hour).Format(time.RFC3339) {
		t.Fatalf("extended to %v", got)
	}
	res = do(t, h, req{method: "POST", path: "/v1/bookings/order-1/confirm"})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t)["status"]; got != "confirmed" {
		t.Fatalf("confirm status = %v", got)
	}
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/bookings/order-1/confirm"}), http.StatusOK)
	res = do(t, h, req{method: "POST", path: "/v1/bookings/order-1/release", body: `{}`})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t)["status"]; got != "released" {
		t.Fatalf("release status = %v", got)
	}
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/bookings/order-1/release"}), http.StatusOK)
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/bookings/order-1/confirm"}), 409, "conflict")
	wantProblem(t, do(t, h, req{method: "GET", path: "/v1/bookings/nope"}), 404, "not-found")

	// A lapsed booking cannot be confirmed.
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/bookings",
		body: `{"booking_id":"order-3","items":[{"pool":"slot","quantity":1},{"pool":"pick","quantity":1}],"ttl":"1m"}`}), http.StatusCreated)
	s.clock.Advance(2 * time.Minute)
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/bookings/order-3/confirm"}), 409, "hold-expired")
	res = do(t, h, req{method: "GET", path: "/v1/bookings/order-3"})
	if got := res.JSON(t)["status"]; got != "expired" {
		t.Fatalf("lapsed booking status = %v", got)
	}
}

func TestExtendAndPartialConfirmAPI(t *testing.T) {
	s := newStack(t)
	h := s.handler
	definePool(t, s, "p1", 10)
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/holds", body: `{"reservation_id":"r1","quantity":3,"ttl":"1m"}`}), http.StatusCreated)
	s.clock.Advance(30 * time.Second)
	res := do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/extend", body: `{"ttl":"5m"}`})
	wantStatus(t, res, http.StatusOK)
	if got, want := res.JSON(t)["expires_at"], epoch.Add(30*time.Second+5*time.Minute).Format(time.RFC3339); got != want {
		t.Fatalf("expires_at = %v, want %v", got, want)
	}
	s.clock.Advance(2 * time.Minute) // past the first deadline: the extension holds it
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/confirm", body: `{"quantity":4}`}), 400, "invalid-request")
	res = do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/confirm", body: `{"quantity":2}`})
	wantStatus(t, res, http.StatusOK)
	if r := res.JSON(t); r["status"] != "confirmed" || r["quantity"] != 2.0 || r["held_quantity"] != 3.0 {
		t.Fatalf("partly confirmed = %v", r)
	}
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/confirm", body: `{"quantity":2}`}), http.StatusOK)
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/confirm"}), http.StatusOK)
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/confirm", body: `{"quantity":1}`}), 409, "conflict")
	res = do(t, h, req{method: "GET", path: "/v1/pools/p1"})
	if p := res.JSON(t); p["confirmed"] != 2.0 || p["held"] != 0.0 || p["available"] != 8.0 {
		t.Fatalf("pool = %v", p)
	}
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/extend", body: `{"ttl":"5m"}`}), 409, "conflict")
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/holds", body: `{"reservation_id":"r2","quantity":1,"ttl":"1m"}`}), http.StatusCreated)
	s.clock.Advance(time.Minute)
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r2/extend", body: `{"ttl":"5m"}`}), 409, "hold-expired")
}
