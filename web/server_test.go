package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/pools/poolstest"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
)

// TestOpenAPICoversRoutes checks that the document is valid, that every
// route is documented and that every documented operation is a route.
func TestOpenAPICoversRoutes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	served := map[string]bool{}
	mux := routes(Config{}.withDefaults())
	err := chi.Walk(mux, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for op := range served {
		if !documented[op] {
			t.Errorf("route %s is not in openapi.json", op)
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("openapi.json documents %s, which is not a route", op)
		}
	}
	if len(served) != 23 {
		t.Errorf("only %d routes: %v", len(served), keys(served))
	}
	res := do(t, NewServer(Config{}), req{method: "GET", path: "/openapi.json"})
	wantStatus(t, res, http.StatusOK)
	if !strings.Contains(string(res.Body), `"openapi": "3.0.3"`) {
		t.Errorf("/openapi.json is not the document")
	}
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// panicky is a Pools whose every method panics.
type panicky struct{}

func (*panicky) Pool(context.Context, string) (capacity.PoolView, error) { panic("boom") }
func (*panicky) Execute(context.Context, string, capacity.Command) (pools.Result, error) {
	panic("boom")
}

func (*panicky) Reservation(context.Context, string, string) (capacity.Reservation, error) {
	panic("boom")
}

func (*panicky) Book(context.Context, capacity.Book) (pools.Booking, error) { panic("boom") }
func (*panicky) Booking(context.Context, string, []capacity.BookingItem) (pools.Booking, error) {
	panic("boom")
}

func (*panicky) ConfirmBooking(context.Context, string, []capacity.BookingItem) (pools.Booking, error) {
	panic("boom")
}

func (*panicky) ReleaseBooking(context.Context, string, []capacity.BookingItem) (pools.Booking, error) {
	panic("boom")
}

func (*panicky) ExtendBooking(context.Context, string, time.Duration, []capacity.BookingItem) (pools.Booking, error) {
	panic("boom")
}
func (*panicky) KnownBooking(string) ([]capacity.BookingItem, bool) { panic("boom") }

func TestPanicBecomesProblem(t *testing.T) {
	logs := &poolstest.LogBuffer{}
	h := NewServer(Config{Pools: &panicky{}, Logger: zerolog.New(logs)})
	for _, rq := range []req{
		{method: "GET", path: "/v1/pools/p"},
		{method: "POST", path: "/v1/pools/p/holds", body: `{"reservation_id":"r","quantity":1}`},
		{method: "POST", path: "/v1/bookings", body: `{"booking_id":"b","items":[{"pool":"p","quantity":1}]}`},
	} {
		p := wantProblem(t, do(t, h, rq), http.StatusInternalServerError, "internal")
		if strings.Contains(p["detail"].(string), "boom") {
			t.Errorf("the panic leaked: %v", p["detail"])
		}
	}
	if l := logs.String(); !strings.Contains(l, "handler panicked") || !strings.Contains(l, "boom") || !strings.Contains(l, "goroutine") {
		t.Errorf("panic not logged with its stack: %s", l)
	}
	if l := logs.String(); !strings.Contains(l, `"status":500`) {
		t.Errorf("request line lacks the 500: %s", l)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(line, `"request_id":"`) {
			t.Errorf("log line without the request id: %s", line)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	logs := &poolstest.LogBuffer{}
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{capacity.Errorf(capacity.EUNAVAILABLE, "outcome unknown"), 503, "unavailable"},
		{capacity.Errorf(capacity.EPRECONDITION, "stale"), 412, "precondition-failed"},
		{capacity.Errorf(capacity.EEXPIRED, "late"), 409, "hold-expired"},
		{fmt.Errorf("wrapped: %w", capacity.Errorf(capacity.EINSUFFICIENT, "full")), 409, "insufficient-capacity"},
		{invalid("bad", map[string]string{"x": "y"}), 400, "invalid-request"},
		{capacity.Errorf("no-such-code", "odd"), 500, "internal"},
		{errors.New("nats: secret internals"), 500, "internal"},
	} {
		h := withRequestID(zerolog.New(logs))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Error(w, r, tc.err) }))
		res := do(t, h, req{method: "GET", path: "/error"})
		p := wantProblem(t, res, tc.status, tc.code)
		if tc.status == 503 && res.Header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
		if tc.status == 500 && strings.Contains(p["detail"].(string), "secret") {
			t.Errorf("internal error leaked: %v", p["detail"])
		}
	}
	if l := logs.String(); !strings.Contains(l, "secret internals") {
		t.Errorf("internal error not logged: %s", l)
	}
	// The line carries the request's id, as the problem and header do.
	logs = &poolstest.LogBuffer{}
	h := withRequestID(zerolog.New(logs))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Error(w, r, errors.New("odd")) }))
	res := do(t, h, req{method: "GET", path: "/error", header: map[string]string{RequestIDHeader: "trace-me-42"}})
	if p := wantProblem(t, res, 500, "internal"); p["request_id"] != "trace-me-42" {
		t.Errorf("problem request_id = %v", p["request_id"])
	}
	if l := logs.String(); !strings.Contains(l, `"request_id":"trace-me-42"`) || !strings.Contains(l, "internal error") {
		t.Errorf("internal error's line lacks the request id: %s", l)
	}
}

// fixedAvailability answers every query with one page and remembers the query.
type fixedAvailability struct {
	page   views.AvailabilityPage
	got    views.AvailabilityQuery
	gotMin views.MinPositions
}

func (f *fixedAvailability) Availability(_ context.Context, q views.AvailabilityQuery, minPosition views.MinPositions) (views.AvailabilityPage, error) {
	f.got, f.gotMin = q, minPosition
	return f.page, nil
}

func TestAvailability(t *testing.T) {
	res := do(t, NewServer(Config{}), req{method: "GET", path: "/v1/availability"})
	wantProblem(t, res, http.StatusServiceUnavailable, "unavailable")
	if res.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}

	start := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	a := &fixedAvailability{page: views.AvailabilityPage{Position: 42, Next: "next", Pools: []capacity.PoolView{{
		ID: "p", Region: "north", Kind: "delivery", StartsAt: start, EndsAt: start.Add(time.Hour),
		Capacity: 5, Status: capacity.Open, Version: 40, Figures: capacity.Figures{Held: 1, Available: 4},
	}}}}
	res = do(t, NewServer(Config{Availability: a}), req{method: "GET",
		path: "/v1/availability?region=north&kind=delivery&from=2026-05-01T00:00:00Z&to=2026-05-02T00:00:00Z&min_position=40&limit=10&page_token=abc"})
	wantStatus(t, res, http.StatusOK)
	body := res.JSON(t)
	if body["position"] != 42.0 || body["next_page_token"] != "next" || len(body["pools"].([]any)) != 1 {
		t.Errorf("availability = %s", res.Body)
	}
	want := views.AvailabilityQuery{Region: "north", Kind: "delivery", From: start.Add(-18 * time.Hour), To: start.Add(6 * time.Hour),
		Limit: 10, Cursor: "abc"}
	if a.got != want || len(a.gotMin) != 1 || a.gotMin[""] != 40 {
		t.Errorf("query = %+v, min_position %v; want %+v, 40", a.got, a.gotMin, want)
	}
	do(t, NewServer(Config{Availability: a}), req{method: "GET", path: "/v1/availability?min_position=a:7,12"})
	if len(a.gotMin) != 2 || a.gotMin["a"] != 7 || a.gotMin[""] != 12 {
		t.Errorf("min_position a:7,12 = %v", a.gotMin)
	}
	do(t, NewServer(Config{Availability: a}), req{method: "GET", path: "/v1/availability"})
	if a.got.Limit != views.DefaultLimit {
		t.Errorf("default limit = %d", a.got.Limit)
	}
}

func TestHealth(t *testing.T) {
	var notReady error = errors.New("nats down")
	h := NewServer(Config{Ready: func() error { return notReady }})
	wantStatus(t, do(t, h, req{method: "GET", path: "/healthz"}), http.StatusOK)
	res := do(t, h, req{method: "GET", path: "/readyz"})
	wantProblem(t, res, http.StatusServiceUnavailable, "unavailable")
	if strings.Contains(string(res.Body), "nats down") {
		t.Errorf("readiness leaked an internal error: %s", res.Body)
	}
	notReady = nil
	wantStatus(t, do(t, h, req{method: "GET", path: "/readyz"}), http.StatusOK)
}
