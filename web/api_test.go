package web

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const slot = `{"region":"north","kind":"delivery","starts_at":"2026-05-01T18:00:00Z","ends_at":"2026-05-01T19:00:00Z","capacity":%d}`

// definePool defines a pool with the given capacity and returns its version.
func definePool(t *testing.T, s *stack, id string, capacity int) uint64 {
	t.Helper()
	res := do(t, s.handler, req{method: "PUT", path: "/v1/pools/" + id, body: fmt.Sprintf(slot, capacity)})
	wantStatus(t, res, http.StatusCreated)
	return uint64(res.JSON(t)["version"].(float64))
}

// poolVersion returns the pool's version as GET answers it.
func poolVersion(t *testing.T, s *stack, id string) uint64 {
	t.Helper()
	res := do(t, s.handler, req{method: "GET", path: "/v1/pools/" + id})
	wantStatus(t, res, http.StatusOK)
	return uint64(res.JSON(t)["version"].(float64))
}

func TestWalkthrough(t *testing.T) {
	s := newStack(t)
	h := s.handler
	body := fmt.Sprintf(slot, 10)

	// Define, define again identically, define differently.
	res := do(t, h, req{method: "PUT", path: "/v1/pools/p1", body: body, header: map[string]string{"Content-Type": "application/json"}})
	wantStatus(t, res, http.StatusCreated)
	pool := res.JSON(t)
	v1 := uint64(pool["version"].(float64))
	if got, want := res.Header.Get("ETag"), fmt.Sprintf(`"%d"`, v1); got != want {
		t.Errorf("ETag = %q, want %q", got, want)
	}
	if got, want := res.Header.Get("Location"), "/v1/pools/p1"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	for k, want := range map[string]any{"id": "p1", "region": "north", "kind": "delivery", "starts_at": "2026-05-01T18:00:00Z",
		"ends_at": "2026-05-01T19:00:00Z", "capacity": 10.0, "held": 0.0, "confirmed": 0.0, "available": 10.0, "status": "open"} {
		if got := pool[k]; got != want {
			t.Errorf("pool[%s] = %v, want %v", k, got, want)
		}
	}
	res = do(t, h, req{method: "PUT", path: "/v1/pools/p1", body: body})
	wantStatus(t, res, http.StatusOK)
	if got := uint64(res.JSON(t)["version"].(float64)); got != v1 {
		t.Errorf("repeat define moved version to %d, want %d", got, v1)
	}
	wantProblem(t, do(t, h, req{method: "PUT", path: "/v1/pools/p1", body: fmt.Sprintf(slot, 11)}), http.StatusConflict, "conflict")

	// Get.
	res = do(t, h, req{method: "GET", path: "/v1/pools/p1"})
	wantStatus(t, res, http.StatusOK)

	// Hold, hold again, same id with another body.
	hold := `{"reservation_id":"r1","quantity":3,"ttl":"5m"}`
	res = do(t, h, req{method: "POST", path: "/v1/pools/p1/holds", body: hold})
	wantStatus(t, res, http.StatusCreated)
	r1 := res.JSON(t)
	if got, want := res.Header.Get("Location"), "/v1/pools/p1/reservations/r1"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	for k, want := range map[string]any{"reservation_id": "r1", "pool": "p1", "quantity": 3.0, "status": "held",
		"expires_at": "2026-05-01T10:05:00Z", "ttl": "5m0s"} {
		if got := r1[k]; got != want {
			t.Errorf("reservation[%s] = %v, want %v", k, got, want)
		}
	}
	res = do(t, h, req{method: "POST", path: "/v1/pools/p1/holds", body: hold})
	wantStatus(t, res, http.StatusOK)
	if got, want := res.JSON(t)["version"], r1["version"]; got != want {
		t.Errorf("repeat hold version = %v, want %v", got, want)
	}
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/holds", body: `{"reservation_id":"r1","quantity":4,"ttl":"5m"}`}), http.StatusConflict, "conflict")

	// Default TTL.
	res = do(t, h, req{method: "POST", path: "/v1/pools/p1/holds", body: `{"reservation_id":"r2","quantity":1}`})
	wantStatus(t, res, http.StatusCreated)
	if got, want := res.JSON(t)["ttl"], "10m0s"; got != want {
		t.Errorf("default ttl = %v, want %v", got, want)
	}

	// Confirm, confirm again, release, get.
	res = do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/confirm"})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t)["status"]; got != "confirmed" {
		t.Errorf("status after confirm = %v", got)
	}
	res = do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r1/confirm"})
	wantStatus(t, res, http.StatusOK)
	res = do(t, h, req{method: "GET", path: "/v1/pools/p1"})
	if p := res.JSON(t); p["held"] != 1.0 || p["confirmed"] != 3.0 || p["available"] != 6.0 {
		t.Errorf("pool after confirm = %s", res.Body)
	}
	res = do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r2/release"})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t)["status"]; got != "released" {
		t.Errorf("status after release = %v", got)
	}
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r2/release"}), http.StatusOK)
	res = do(t, h, req{method: "GET", path: "/v1/pools/p1/reservations/r1"})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t)["status"]; got != "confirmed" {
		t.Errorf("GET reservation status = %v", got)
	}
	wantProblem(t, do(t, h, req{method: "GET", path: "/v1/pools/p1/reservations/nope"}), http.StatusNotFound, "not-found")
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/p1/reservations/r2/confirm"}), http.StatusConflict, "conflict")

	// PATCH without and with If-Match, stale If-Match.
	res = do(t, h, req{method: "PATCH", path: "/v1/pools/p1", body: `{"capacity":20}`})
	wantStatus(t, res, http.StatusOK)
	p := res.JSON(t)
	if p["capacity"] != 20.0 || p["available"] != 17.0 {
		t.Errorf("pool after capacity change = %s", res.Body)
	}
	version := uint64(p["version"].(float64))
	for _, form := range []string{`"%d"`, `%d`, `W/"%d"`} {
		res = do(t, h, req{method: "PATCH", path: "/v1/pools/p1", body: `{"status":"closed"}`, header: map[string]string{"If-Match": fmt.Sprintf(form, version)}})
		wantStatus(t, res, http.StatusOK)
		if got := res.JSON(t)["status"]; got != "closed" {
			t.Errorf("status = %v, want closed", got)
		}
		res = do(t, h, req{method: "PATCH", path: "/v1/pools/p1", body: `{"status":"open"}`})
		wantStatus(t, res, http.StatusOK)
		version = uint64(res.JSON(t)["version"].(float64))
	}
	wantProblem(t, do(t, h, req{method: "PATCH", path: "/v1/pools/p1", body: `{"capacity":5}`, header: map[string]string{"If-Match": `"1"`}}),
		http.StatusPreconditionFailed, "precondition-failed")
	res = do(t, h, req{method: "PATCH", path: "/v1/pools/p1", body: `{"capacity":15,"status":"closed"}`, header: map[string]string{"If-Match": "*"}})
	wantStatus(t, res, http.StatusOK)
	if p := res.JSON(t); p["capacity"] != 15.0 || p["status"] != "closed" {
		t.Errorf("pool after both changes = %s", res.Body)
	}

	// The history, in order.
	res = do(t, h, req{method: "GET", path: "/v1/pools/p1/events"})
	wantStatus(t, res, http.StatusOK)
	var types []string
	var last float64
	for _, e := range res.JSON(t)["events"].([]any) {
		e := e.(map[string]any)
		if seq := e["seq"].(float64); seq < last { // the events of one commit share its seq
			t.Errorf("events out of order: %v after %v", seq, last)
		} else {
			last = seq
		}
		types = append(types, strings.TrimPrefix(e["type"].(string), "capacity."))
	}
	want := "pool.defined reservation.held reservation.held reservation.confirmed reservation.released pool.capacity_changed " +
		"pool.closed pool.reopened pool.closed pool.reopened pool.closed pool.reopened pool.capacity_changed pool.closed"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("event types:\n got %s\nwant %s", got, want)
	}
	// The last PATCH changed capacity and status in one commit: a page never splits it.
	res = do(t, h, req{method: "GET", path: fmt.Sprintf("/v1/pools/p1/events?from=%d&limit=1", uint64(last))})
	if n := len(res.JSON(t)["events"].([]any)); n != 2 {
		t.Errorf("events of the last commit with limit 1 = %d, want 2", n)
	}
	res = do(t, h, req{method: "GET", path: "/v1/pools/p1/events?limit=2"})
	if n := len(res.JSON(t)["events"].([]any)); n != 2 {
		t.Errorf("events with limit 2 = %d, want 2", n)
	}
	wantProblem(t, do(t, h, req{method: "GET", path: "/v1/pools/nope/events"}), http.StatusNotFound, "not-found")

	// Metrics over the walk.
	res = do(t, h, req{method: "GET", path: "/metrics"})
	wantStatus(t, res, http.StatusOK)
	for _, line := range []string{
		"capacity_holds_accepted_total 2", // the idempotent repeat does not count
		"capacity_holds_rejected_total 1",
		`http_requests_total{method="POST",route="/v1/pools/{pool}/holds",status="201"} 2`,
		`http_request_duration_seconds_count{method="PUT",route="/v1/pools/{pool}"} 3`,
		"capacity_pools_loaded ",
		"capacity_appends_total ",
		"capacity_events_appended_total ",
		"capacity_append_conflicts_total 0",
		"capacity_append_batch_commands_count ",
	} {
		if !strings.Contains(string(res.Body), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
}

func TestHoldRefusals(t *testing.T) {
	s := newStack(t)
	h := s.handler
	definePool(t, s, "small", 2)

	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/small/holds", body: `{"reservation_id":"a","quantity":2}`}), http.StatusCreated)
	v := poolVersion(t, s, "small")
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/small/holds", body: `{"reservation_id":"b","quantity":1}`}),
		http.StatusConflict, "insufficient-capacity")

	wantStatus(t, do(t, h, req{method: "PATCH", path: "/v1/pools/small", body: `{"status":"closed","capacity":5}`}), http.StatusOK)
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/small/holds", body: `{"reservation_id":"c","quantity":1}`}),
		http.StatusConflict, "pool-closed")
	// The PATCH is one commit of two events (one message, one sequence).
	if got := poolVersion(t, s, "small"); got != v+1 {
		t.Errorf("version = %d, want %d (refusals write nothing)", got, v+1)
	}
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/none/holds", body: `{"reservation_id":"c","quantity":1}`}),
		http.StatusNotFound, "not-found")
}

func TestConfirmAfterExpiry(t *testing.T) {
	s := newStack(t)
	h := s.handler
	definePool(t, s, "exp", 5)
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/exp/holds", body: `{"reservation_id":"late","quantity":5,"ttl":"1m"}`}), http.StatusCreated)
	s.clock.Advance(time.Minute + time.Second)

	res := do(t, h, req{method: "GET", path: "/v1/pools/exp/reservations/late"})
	if got := res.JSON(t)["status"]; got != "expired" {
		t.Errorf("status after the deadline = %v, want expired", got)
	}
	wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/exp/reservations/late/confirm"}), http.StatusConflict, "hold-expired")
	// The units are free again: a new hold fits.
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/exp/holds", body: `{"reservation_id":"next","quantity":5}`}), http.StatusCreated)
	// Releasing a lapsed hold changes nothing and says so.
	res = do(t, h, req{method: "POST", path: "/v1/pools/exp/reservations/late/release"})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t)["status"]; got != "expired" {
		t.Errorf("status after release of a lapsed hold = %v, want expired", got)
	}
}

func TestRequestID(t *testing.T) {
	s := newStack(t)
	res := do(t, s.handler, req{method: "GET", path: "/healthz", header: map[string]string{RequestIDHeader: "abc-123"}})
	wantStatus(t, res, http.StatusOK)
	if got := res.Header.Get(RequestIDHeader); got != "abc-123" {
		t.Errorf("request id = %q, want the client's", got)
	}
	res = do(t, s.handler, req{method: "GET", path: "/healthz", header: map[string]string{RequestIDHeader: "bad id\x01"}})
	if got := res.Header.Get(RequestIDHeader); got == "" || strings.Contains(got, " ") {
		t.Errorf("request id = %q, want a fresh one", got)
	}
	if !strings.Contains(s.logs.String(), `"request_id":"abc-123"`) || !strings.Contains(s.logs.String(), `"route":"/healthz"`) {
		t.Errorf("log lacks the request: %s", s.logs.String())
	}
}

// TestSmallGaps covers HEAD on GET routes, overbook by PATCH, confirm and
// release with an empty JSON body, and the message of an id that is too long.
func TestSmallGaps(t *testing.T) {
	s := newStack(t)
	h := s.handler
	definePool(t, s, "gaps", 2)

	for _, path := range []string{"/v1/pools/gaps", "/healthz", "/openapi.json", "/v1/pools/gaps/events", "/v1/board/stream"} {
		get := do(t, h, req{method: "GET", path: path})
		if path == "/v1/board/stream" {
			get = response{Status: http.StatusServiceUnavailable} // no UI in this stack: 503 either way
		}
		head := do(t, h, req{method: "HEAD", path: path})
		if head.Status != get.Status {
			t.Errorf("HEAD %s = %d, GET = %d", path, head.Status, get.Status)
		}
		if len(head.Body) != 0 {
			t.Errorf("HEAD %s sent a body: %s", path, head.Body)
		}
	}
	if res := do(t, h, req{method: "HEAD", path: "/v1/pools/gaps"}); res.Header.Get("ETag") == "" || res.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD pool headers = %v, want ETag and Content-Length", res.Header)
	}

	res := do(t, h, req{method: "PATCH", path: "/v1/pools/gaps", body: `{"overbook":1}`})
	wantStatus(t, res, http.StatusOK)
	if got := res.JSON(t); got["overbook"] != 1.0 || got["available"] != 3.0 {
		t.Errorf("after PATCH overbook 1: overbook %v available %v, want 1 and 3", got["overbook"], got["available"])
	}
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/gaps/holds", body: `{"reservation_id":"g1","quantity":3}`}), http.StatusCreated)
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/gaps/reservations/g1/confirm", body: `{}`,
		header: map[string]string{"Content-Type": "application/json"}}), http.StatusOK)
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/gaps/reservations/g1/release", body: " \n"}), http.StatusOK)
	events := string(do(t, h, req{method: "GET", path: "/v1/pools/gaps/events"}).Body)
	for _, want := range []string{`"type":"capacity.pool.overbook_changed"`, `"ttl":"10m0s"`} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %s: %s", want, events)
		}
	}

	long := strings.Repeat("x", 70)
	p := wantProblem(t, do(t, h, req{method: "GET", path: "/v1/pools/" + long}), http.StatusBadRequest, "invalid-request")
	if d, _ := p["detail"].(string); !strings.Contains(d, "70 characters long") {
		t.Errorf("detail = %q, want the id's length", d)
	}
	p = wantProblem(t, do(t, h, req{method: "POST", path: "/v1/pools/gaps/holds", body: `{"reservation_id":"` + long + `","quantity":1}`}), http.StatusBadRequest, "invalid-request")
	if e, _ := p["errors"].(map[string]any); !strings.Contains(fmt.Sprint(e["reservation_id"]), "70 characters long") {
		t.Errorf("errors = %v, want the id's length", p["errors"])
	}
}
