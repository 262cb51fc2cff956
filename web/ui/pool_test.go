package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

func TestPoolPage(t *testing.T) {
	s := newStack(t)
	starts := epoch.Add(26 * time.Hour)
	s.define(t, "p1", "north", "delivery", starts, 10)
	s.hold(t, "p1", "r1", 3)
	s.clock.Advance(time.Minute)
	s.hold(t, "p1", "r2", 2)
	if _, err := s.svc.Execute(context.Background(), "p1", capacity.Confirm{ReservationID: "r1"}); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(time.Minute)
	v := s.change(t, "p1", capacity.ChangePool{Capacity: new(8)})

	res := s.get(t, "/ui/pools/p1")
	wantStatus(t, res, http.StatusOK)
	wantBody(t, res,
		"<title>Pool p1 · capacityd planner</title>",
		`<dd id="fig-capacity">8</dd>`, `<dd id="fig-held">2</dd>`, `<dd id="fig-confirmed">3</dd>`, `<dd id="fig-available">3</dd>`,
		fmt.Sprintf(`<dd id="fig-version">%d</dd>`, v.Version),
		fmt.Sprintf(`<input type="hidden" name="version" value="%d">`, v.Version),
		`action="/ui/pools/p1/capacity"`, `<input type="hidden" name="status" value="closed">`, "Close pool",
		// chart
		`<svg viewBox="0 0 720 220" role="img"`, "<desc id=\"chart-desc\">Units in use from 2030-03-04 06:00", "now 5 of capacity 8",
		// reservations
		"Reservations (2)", "<code>r1</code>", `rs-confirmed`, "<code>r2</code>", `rs-held`,
		// audit trail, newest first
		"History (5 events, newest first)", "<code>capacity.pool.capacity_changed</code>", "capacity 10 → 8",
		"r2 held 2 until 06:11:00 UTC (TTL 10m0s)", "r1 confirmed", "<code>capacity.pool.defined</code>",
		"defined in north as delivery, 2030-03-05 08:00 to 10:00 UTC, capacity 10",
		`href="/?from=2030-03-05&amp;kind=delivery&amp;region=north&amp;to=2030-03-11"`,
	)
	if i, j := strings.Index(res.Body, "capacity_changed"), strings.Index(res.Body, "capacity.pool.defined"); i > j {
		t.Errorf("history is not newest first")
	}

	t.Run("outcome message", func(t *testing.T) {
		res := s.get(t, "/ui/pools/p1?done=capacity")
		wantBody(t, res, `class="flash flash-ok"`, "Capacity changed.")
	})
	t.Run("unknown pool", func(t *testing.T) {
		res := s.get(t, "/ui/pools/nope")
		wantStatus(t, res, http.StatusNotFound)
		wantBody(t, res, "Error 404", "pool not found")
	})
	t.Run("invalid id", func(t *testing.T) {
		res := s.get(t, "/ui/pools/"+strings.Repeat("x", 65))
		wantStatus(t, res, http.StatusNotFound)
		wantBody(t, res, "pool ids are 1-64 characters")
	})
}

func TestPoolCapacity(t *testing.T) {
	s := newStack(t)
	v := s.define(t, "p1", "north", "delivery", epoch.Add(26*time.Hour), 10)
	form := func(capacityValue string, version uint64) url.Values {
		return url.Values{"capacity": {capacityValue}, "version": {fmt.Sprint(version)}}
	}

	res := s.post(t, "/ui/pools/p1/capacity", form("12", v.Version))
	wantStatus(t, res, http.StatusSeeOther)
	if got, want := res.Header.Get("Location"), "/ui/pools/p1?done=capacity"; got != want {
		t.Fatalf("Location = %q, want %q", got, want)
	}
	now, err := s.svc.Pool(context.Background(), "p1")
	if err != nil || now.Capacity != 12 {
		t.Fatalf("pool after change = %+v, %v; want capacity 12", now, err)
	}

	t.Run("same again", func(t *testing.T) {
		res := s.post(t, "/ui/pools/p1/capacity", form("12", now.Version))
		wantStatus(t, res, http.StatusSeeOther)
		if got := res.Header.Get("Location"); got != "/ui/pools/p1?done=unchanged" {
			t.Errorf("Location = %q", got)
		}
	})
	t.Run("stale version", func(t *testing.T) {
		res := s.post(t, "/ui/pools/p1/capacity", form("7", v.Version)) // the version before the change
		wantStatus(t, res, http.StatusPreconditionFailed)
		wantBody(t, res, `role="alert"`, "Your change (capacity to 7) was not applied",
			fmt.Sprintf("It is now at version %d: capacity 12, 0 held, 0 confirmed, 12 available, open.", now.Version),
			fmt.Sprintf(`<input type="hidden" name="version" value="%d">`, now.Version), `value="7"`)
		if got, _ := s.svc.Pool(context.Background(), "p1"); got.Capacity != 12 {
			t.Errorf("capacity = %d after a stale change, want 12", got.Capacity)
		}
		// Submitting the form as re-rendered is a deliberate retry, and wins.
		res = s.post(t, "/ui/pools/p1/capacity", form("7", now.Version))
		wantStatus(t, res, http.StatusSeeOther)
		if got, _ := s.svc.Pool(context.Background(), "p1"); got.Capacity != 7 {
			t.Errorf("capacity = %d after the retry, want 7", got.Capacity)
		}
	})
	for _, tc := range []struct {
		name, value, version, want string
	}{
		{"not a number", "ten", "1", "Capacity must be a whole number from 0 to 1000000000."},
		{"negative", "-1", "1", "Capacity must be a whole number from 0 to 1000000000."},
		{"too large", "1000000001", "1", "Capacity must be a whole number"},
		{"empty", "", "1", "Capacity must be a whole number"},
		{"no version", "5", "", "the form has no valid pool version"},
		{"bad version", "5", "seven", "the form has no valid pool version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := s.svc.Pool(context.Background(), "p1")
			res := s.post(t, "/ui/pools/p1/capacity", url.Values{"capacity": {tc.value}, "version": {tc.version}})
			wantStatus(t, res, http.StatusBadRequest)
			wantBody(t, res, `role="alert"`, "Not applied: ", tc.want)
			if after, _ := s.svc.Pool(context.Background(), "p1"); after.Version != before.Version {
				t.Errorf("a refused form changed the pool: version %d -> %d", before.Version, after.Version)
			}
		})
	}
	t.Run("bad value keeps the input", func(t *testing.T) {
		res := s.post(t, "/ui/pools/p1/capacity", form("ten", 1))
		wantBody(t, res, `value="ten"`, `aria-invalid="true" aria-describedby="e-capacity"`)
	})
	t.Run("unknown pool", func(t *testing.T) {
		res := s.post(t, "/ui/pools/nope/capacity", form("5", 1))
		wantStatus(t, res, http.StatusNotFound)
		wantBody(t, res, "Error 404", "pool not found")
	})
	t.Run("invalid pool id", func(t *testing.T) {
		res := s.post(t, "/ui/pools/bad.id/capacity", form("5", 1))
		wantStatus(t, res, http.StatusBadRequest)
	})
}

func TestPoolStatus(t *testing.T) {
	s := newStack(t)
	v := s.define(t, "p1", "north", "delivery", epoch.Add(26*time.Hour), 10)
	post := func(status string, version uint64) response {
		return s.post(t, "/ui/pools/p1/status", url.Values{"status": {status}, "version": {fmt.Sprint(version)}})
	}
	res := post("closed", v.Version)
	wantStatus(t, res, http.StatusSeeOther)
	if got := res.Header.Get("Location"); got != "/ui/pools/p1?done=closed" {
		t.Errorf("Location = %q", got)
	}
	closed, _ := s.svc.Pool(context.Background(), "p1")
	if closed.Status != capacity.Closed {
		t.Fatalf("status = %s, want closed", closed.Status)
	}
	page := s.get(t, "/ui/pools/p1?done=closed")
	wantBody(t, page, "Pool closed: it takes no new holds.", `<input type="hidden" name="status" value="open">`, "Reopen pool")

	t.Run("stale", func(t *testing.T) {
		res := post("open", v.Version)
		wantStatus(t, res, http.StatusPreconditionFailed)
		wantBody(t, res, "Your change (reopening the pool) was not applied", "closed.")
	})
	t.Run("bad status", func(t *testing.T) {
		res := post("half-open", closed.Version)
		wantStatus(t, res, http.StatusBadRequest)
		wantBody(t, res, `Not applied: status must be &#34;open&#34; or &#34;closed&#34;`)
	})
	t.Run("reopen", func(t *testing.T) {
		res := post("open", closed.Version)
		wantStatus(t, res, http.StatusSeeOther)
		if got, _ := s.svc.Pool(context.Background(), "p1"); got.Status != capacity.Open {
			t.Errorf("status = %s, want open", got.Status)
		}
	})
	t.Run("unknown pool", func(t *testing.T) {
		res := s.post(t, "/ui/pools/nope/status", url.Values{"status": {"closed"}, "version": {"1"}})
		wantStatus(t, res, http.StatusNotFound)
	})
}

func TestSameOrigin(t *testing.T) {
	s := newStack(t)
	v := s.define(t, "p1", "north", "delivery", epoch.Add(26*time.Hour), 10)
	body := url.Values{"capacity": {"5"}, "version": {fmt.Sprint(v.Version)}}.Encode()
	for _, tc := range []struct {
		name, origin, referer string
		status                int
	}{
		{"same origin", "http://example.com", "", http.StatusSeeOther},
		{"same origin by referer", "", "http://example.com/ui/pools/p1", http.StatusSeeOther},
		{"other site", "https://evil.example", "", http.StatusForbidden},
		{"other site by referer", "", "https://evil.example/form", http.StatusForbidden},
		{"null origin", "null", "", http.StatusForbidden},
		{"neither", "", "", http.StatusForbidden},
		{"trusted proxy name", "https://planner.internal", "", http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := New(Config{Pools: s.svc, History: s.events, Now: s.clock.Now, TrustedOrigins: []string{"https://planner.internal/"}})
			if err != nil {
				t.Fatal(err)
			}
			h := s.mount(u)
			req := httptest.NewRequest(http.MethodPost, "/ui/pools/p1/capacity", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.referer != "" {
				req.Header.Set("Referer", tc.referer)
			}
			res := serve(t, h, req)
			wantStatus(t, res, tc.status)
			if tc.status == http.StatusForbidden {
				wantBody(t, res, "was not sent from a page of this planner")
			}
			body = url.Values{"capacity": {"5"}, "version": {fmt.Sprint(mustPool(t, s, "p1").Version)}}.Encode()
		})
	}
}

// mustPool reads a pool from the write side.
func mustPool(t testing.TB, s *stack, id string) capacity.PoolView {
	t.Helper()
	p, err := s.svc.Pool(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A booking's reservation links to its booking and to its other pools.
func TestPoolPageShowsBookings(t *testing.T) {
	s := newStack(t)
	starts := epoch.Add(26 * time.Hour)
	s.define(t, "slot1", "north", "delivery", starts, 10)
	s.define(t, "pick1", "north", "picking", starts, 10)
	if _, err := s.svc.Book(context.Background(), capacity.Book{BookingID: "order-9", TTL: time.Hour,
		Items: []capacity.BookingItem{{Pool: "slot1", Quantity: 1}, {Pool: "pick1", Quantity: 4}}}); err != nil {
		t.Fatal(err)
	}
	res := s.get(t, "/ui/pools/slot1")
	wantStatus(t, res, http.StatusOK)
	wantBody(t, res, `<a href="/v1/bookings/order-9">order-9</a> with <a href="/ui/pools/pick1">pick1</a>`,
		"order-9 held 1 until", "for booking order-9 (2 pools)")
}
