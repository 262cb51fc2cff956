package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams/natstest"
)

// want fails the test unless r has the status (and, for errors, is a
// problem+json of the code).
func want(t *testing.T, what string, r Response, status int, problem string) {
	t.Helper()
	if r.Err != nil && r.Status == 0 {
		t.Fatalf("%s: %v", what, r.Err)
	}
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.Status, status, truncate(r.Body, 300))
	}
	if status >= 400 {
		if !r.ProblemJSON {
			t.Fatalf("%s: status %d is not a problem+json with a %s type: Content-Type %q, body %s",
				what, status, ProblemTypeBase, r.Header.Get("Content-Type"), truncate(r.Body, 300))
		}
		if problem != "" && r.Problem != problem {
			t.Fatalf("%s: problem %q, want %q", what, r.Problem, problem)
		}
	}
}

func definition(capacity int) PoolDefinition {
	starts := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	return PoolDefinition{Region: "local", Kind: "delivery", Capacity: capacity,
		StartsAt: starts.Format(time.RFC3339), EndsAt: starts.Add(time.Hour).Format(time.RFC3339)}
}

// TestAPIWalkthrough walks the whole HTTP contract (docs/API.md) against the
// binary.
func TestAPIWalkthrough(t *testing.T) {
	svc := startCapacityd(t, capacitydOpts{})
	c := NewClient(svc.HTTPURL, 10*time.Second)
	defer c.Close()
	ctx := context.Background()
	do := func(method, path string, body any, h http.Header) Response { return c.Do(ctx, method, path, body, h) }

	want(t, "healthz", do("GET", "/healthz", nil, nil), 200, "")
	want(t, "readyz", do("GET", "/readyz", nil, nil), 200, "")
	want(t, "openapi", do("GET", "/openapi.json", nil, nil), 200, "")

	def := definition(3)
	want(t, "define", do("PUT", "/v1/pools/walk", def, nil), 201, "")
	want(t, "define again", do("PUT", "/v1/pools/walk", def, nil), 200, "")
	other := def
	other.Capacity = 4
	want(t, "define differently", do("PUT", "/v1/pools/walk", other, nil), 409, "conflict")
	want(t, "define invalid", do("PUT", "/v1/pools/walk2", PoolDefinition{Region: "local"}, nil), 400, "invalid-request")
	want(t, "unknown pool", do("GET", "/v1/pools/nope", nil, nil), 404, "not-found")
	want(t, "bad pool id", do("GET", "/v1/pools/bad.id", nil, nil), 400, "invalid-request")

	r := do("POST", "/v1/pools/walk/holds", HoldRequest{ReservationID: "r1", Quantity: 2, TTL: "1h"}, nil)
	want(t, "hold", r, 201, "")
	var res ReservationDoc
	if err := r.Decode(&res); err != nil {
		t.Fatal(err)
	}
	if res.ReservationID != "r1" || res.Pool != "walk" || res.Quantity != 2 || res.Status != "held" || res.Version == 0 {
		t.Fatalf("hold answered %+v", res)
	}
	r = do("POST", "/v1/pools/walk/holds", HoldRequest{ReservationID: "r1", Quantity: 2, TTL: "1h"}, nil)
	if r.Status != 200 && r.Status != 201 {
		t.Fatalf("repeated hold: status %d, want 200 or 201", r.Status)
	}
	var again ReservationDoc
	if err := r.Decode(&again); err != nil || again.ReservationID != "r1" || again.Version != res.Version || again.Status != "held" {
		t.Fatalf("repeated hold answered %+v (%v), want the first reservation %+v", again, err, res)
	}
	want(t, "same id, other body", do("POST", "/v1/pools/walk/holds", HoldRequest{ReservationID: "r1", Quantity: 1, TTL: "1h"}, nil), 409, "conflict")
	want(t, "too big", do("POST", "/v1/pools/walk/holds", HoldRequest{ReservationID: "r2", Quantity: 2, TTL: "1h"}, nil), 409, "insufficient-capacity")
	want(t, "bad quantity", do("POST", "/v1/pools/walk/holds", HoldRequest{ReservationID: "r3", Quantity: 0}, nil), 400, "invalid-request")
	want(t, "hold on unknown pool", do("POST", "/v1/pools/nope/holds", HoldRequest{ReservationID: "r3", Quantity: 1}, nil), 404, "not-found")
	want(t, "hold fits", do("POST", "/v1/pools/walk/holds", HoldRequest{ReservationID: "r2", Quantity: 1, TTL: "1h"}, nil), 201, "")

	want(t, "confirm", do("POST", "/v1/pools/walk/reservations/r1/confirm", nil, nil), 200, "")
	want(t, "confirm again", do("POST", "/v1/pools/walk/reservations/r1/confirm", nil, nil), 200, "")
	want(t, "confirm unknown", do("POST", "/v1/pools/walk/reservations/zz/confirm", nil, nil), 404, "not-found")
	want(t, "release", do("POST", "/v1/pools/walk/reservations/r2/release", nil, nil), 200, "")
	want(t, "release again", do("POST", "/v1/pools/walk/reservations/r2/release", nil, nil), 200, "")
	want(t, "confirm released", do("POST", "/v1/pools/walk/reservations/r2/confirm", nil, nil), 409, "conflict")

	r = do("GET", "/v1/pools/walk/reservations/r1", nil, nil)
	want(t, "get reservation", r, 200, "")
	if err := r.Decode(&res); err != nil || res.Status != "confirmed" || res.Quantity != 2 {
		t.Fatalf("reservation r1 = %+v (%v), want confirmed, 2", res, err)
	}
	want(t, "get unknown reservation", do("GET", "/v1/pools/walk/reservations/zz", nil, nil), 404, "not-found")

	r = do("GET", "/v1/pools/walk", nil, nil)
	want(t, "get pool", r, 200, "")
	var pool PoolDoc
	if err := r.Decode(&pool); err != nil {
		t.Fatal(err)
	}
	if pool.Capacity != 3 || pool.Held != 0 || pool.Confirmed != 2 || pool.Available != 1 || pool.Status != "open" {
		t.Fatalf("pool = %+v, want capacity 3, held 0, confirmed 2, available 1, open", pool)
	}
	if etag := r.Header.Get("ETag"); etag != fmt.Sprintf("%q", fmt.Sprint(pool.Version)) {
		t.Fatalf("ETag %q, want the version %d quoted", etag, pool.Version)
	}

	r = do("GET", "/v1/pools/walk/events?from=1", nil, nil)
	want(t, "events", r, 200, "")
	var events struct {
		Events []struct {
			Seq  uint64 `json:"seq"`
			Type string `json:"type"`
		} `json:"events"`
	}
	if err := r.Decode(&events); err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{"capacity.pool.defined", "capacity.reservation.held", "capacity.reservation.held",
		"capacity.reservation.confirmed", "capacity.reservation.released"}
	var gotTypes []string
	for i, e := range events.Events {
		gotTypes = append(gotTypes, e.Type)
		if i > 0 && e.Seq < events.Events[i-1].Seq {
			t.Fatalf("events out of order: %+v", events.Events)
		}
	}
	if fmt.Sprint(gotTypes) != fmt.Sprint(wantTypes) {
		t.Fatalf("event types %v, want %v", gotTypes, wantTypes)
	}
	if last := events.Events[len(events.Events)-1].Seq; last != pool.Version {
		t.Fatalf("last event seq %d, pool version %d", last, pool.Version)
	}

	stale := http.Header{"If-Match": {fmt.Sprintf("%q", fmt.Sprint(pool.Version-1))}}
	want(t, "PATCH with a stale If-Match", do("PATCH", "/v1/pools/walk", map[string]any{"capacity": 5}, stale), 412, "precondition-failed")
	current := http.Header{"If-Match": {fmt.Sprintf("%q", fmt.Sprint(pool.Version))}}
	r = do("PATCH", "/v1/pools/walk", map[string]any{"capacity": 5}, current)
	want(t, "PATCH with If-Match", r, 200, "")
	if err := r.Decode(&pool); err != nil || pool.Capacity != 5 || pool.Available != 3 {
		t.Fatalf("patched pool = %+v (%v), want capacity 5, available 3", pool, err)
	}
	want(t, "close", do("PATCH", "/v1/pools/walk", map[string]any{"status": "closed"}, nil), 200, "")
	want(t, "hold on a closed pool", do("POST", "/v1/pools/walk/holds", HoldRequest{ReservationID: "r4", Quantity: 1}, nil), 409, "pool-closed")
	want(t, "reopen", do("PATCH", "/v1/pools/walk", map[string]any{"status": "open"}, nil), 200, "")
	want(t, "hold after reopening", do("POST", "/v1/pools/walk/holds", HoldRequest{ReservationID: "r4", Quantity: 1}, nil), 201, "")

	// The availability read model may not be wired yet: 200, or a 503
	// problem.
	r = do("GET", "/v1/availability?region=local&kind=delivery", nil, nil)
	switch r.Status {
	case 200:
		var page struct {
			Position uint64    `json:"position"`
			Pools    []PoolDoc `json:"pools"`
		}
		if err := r.Decode(&page); err != nil {
			t.Fatalf("availability: %v", err)
		}
	case 503:
		want(t, "availability", r, 503, "unavailable")
		t.Logf("availability answered 503 (%s): read model not wired", truncate(r.Body, 120))
	default:
		t.Fatalf("availability: status %d, want 200 or 503: %s", r.Status, truncate(r.Body, 300))
	}

	code, took := svc.Term(10 * time.Second)
	if code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0", code)
	}
	t.Logf("SIGTERM on an idle service: exit 0 in %v", took.Round(time.Millisecond))
}

// TestKill9KeepsAcknowledgedHolds kills the binary while 16 clients are
// holding and restarts it on the same data directory: every acknowledged
// hold is still there and the pools count exactly the holds that happened.
func TestKill9KeepsAcknowledgedHolds(t *testing.T) {
	svc := startCapacityd(t, capacitydOpts{})
	ctx := context.Background()
	c := NewClient(svc.HTTPURL, 10*time.Second)
	defer c.Close()
	pools := []string{"k0", "k1", "k2", "k3"}
	for _, p := range pools {
		if err := c.DefinePool(ctx, p, definition(1_000_000)); err != nil {
			t.Fatal(err)
		}
	}
	type hold struct {
		pool, id string
		qty      int
		outcome  Outcome
	}
	var (
		mu    sync.Mutex
		holds []hold
		acked atomic.Int64
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for i := range 16 {
		wg.Go(func() {
			hc := NewClient(svc.HTTPURL, 3*time.Second)
			defer hc.Close()
			for n := 0; !stop.Load(); n++ {
				h := hold{pool: pools[(i+n)%len(pools)], id: fmt.Sprintf("k-%d-%d", i, n), qty: 1 + n%3}
				r := hc.Do(ctx, "POST", "/v1/pools/"+h.pool+"/holds", HoldRequest{ReservationID: h.id, Quantity: h.qty, TTL: "1h"}, nil)
				h.outcome = r.Outcome
				if r.Outcome == OK && r.Status != 201 {
					t.Errorf("hold %s: status %d, want 201 for a new reservation", h.id, r.Status)
				}
				if r.Outcome == Rejected {
					t.Errorf("hold %s refused: %s", h.id, truncate(r.Body, 200))
				}
				mu.Lock()
				holds = append(holds, h)
				mu.Unlock()
				if r.Outcome == OK {
					acked.Add(1)
				} else {
					return // the service is gone: this client is done
				}
			}
		})
	}
	natstest.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if n := acked.Load(); n < 300 {
			return fmt.Errorf("%d holds acknowledged", n)
		}
		return nil
	})
	svc.Kill9()
	stop.Store(true)
	wg.Wait()
	svc.Restart(t)

	held := map[string]int{}
	var present, unknownPresent, unknown int
	for _, h := range holds {
		res, found, err := c.GetReservation(ctx, h.pool, h.id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.outcome == OK && !found:
			t.Errorf("acknowledged hold %s/%s is gone after kill -9", h.pool, h.id)
		case h.outcome == OK && (res.Status != "held" || res.Quantity != h.qty):
			t.Errorf("acknowledged hold %s/%s is %+v after kill -9", h.pool, h.id, res)
		case h.outcome == Unknown:
			unknown++
			if found {
				unknownPresent++
			}
		}
		if found {
			present++
			held[h.pool] += h.qty
		}
	}
	for _, p := range pools {
		doc, err := c.GetPool(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if doc.Held != held[p] || doc.Confirmed != 0 {
			t.Errorf("pool %s after restart: held %d confirmed %d, want held %d (the holds present) and 0", p, doc.Held, doc.Confirmed, held[p])
		}
	}
	t.Logf("FIGURES %s: holds acknowledged=%d, unknown=%d (of which present after restart=%d), present=%d",
		t.Name(), acked.Load(), unknown, unknownPresent, present)
}

// TestSIGTERMWhileBusy sends SIGTERM while 16 clients have requests in
// flight: the process exits 0 within 10 s and no acknowledged hold is lost.
func TestSIGTERMWhileBusy(t *testing.T) {
	svc := startCapacityd(t, capacitydOpts{})
	w := DefaultWorkload([]string{svc.HTTPURL}, 16)
	ctx := context.Background()
	if err := w.Define(ctx, "local"); err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	tr := w.Start(rec)
	if err := tr.WaitOK(ctx, 200); err != nil {
		t.Fatal(err)
	}
	code, took := svc.Term(10 * time.Second)
	tr.Stop()
	if code != 0 {
		t.Errorf("SIGTERM under load: exit code %d, want 0", code)
	}
	// Requests sent after the listener closed are refused; requests sent on
	// a keep-alive connection as shutdown closed it are dropped unexecuted
	// (TestSIGTERMAnswersExecutedRequests checks that); verify below checks
	// that nothing acknowledged is lost.
	kinds := map[string]int{}
	for _, op := range rec.All() {
		if op.Outcome == Unknown {
			kinds[unknownKind(op)]++
		}
	}
	t.Logf("FIGURES %s: exit %d in %v; %d ops, unknown by cause: %v", t.Name(),
		code, took.Round(time.Millisecond), len(rec.All()), kinds)
	svc.Restart(t)
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: svc.NATSURL, logs: []*proc{svc.proc}})
}

// unknownKind says why an operation's outcome is unknown: refused (the
// listener was closed), 503, timeout, or dropped (the connection broke
// under a request already sent).
func unknownKind(op Op) string {
	switch {
	case op.Status == 503:
		return "503"
	case op.Status != 0:
		return fmt.Sprint(op.Status)
	case strings.Contains(op.Err, "connection refused"):
		return "refused"
	case strings.Contains(op.Err, "Timeout") || strings.Contains(op.Err, "deadline"):
		return "timeout"
	}
	return "dropped"
}

// TestSIGTERMAnswersExecutedRequests sends SIGTERM under load several
// times and counts holds that were executed (present after restart) but
// never answered (the connection broke under them): "finish in-flight
// requests" means there are none. Requests sent on a keep-alive connection
// as shutdown closes it get EOF or a reset and are not executed: a client
// retries them with the same reservation id. The net/http race of
// golang/go#65802 (a request read just as Shutdown closes its connection
// as idle is still executed, unanswered) would show up here; it has not in
// 24 rounds on the test machine.
func TestSIGTERMAnswersExecutedRequests(t *testing.T) {
	svc := startCapacityd(t, capacitydOpts{})
	ctx := context.Background()
	c := NewClient(svc.HTTPURL, 10*time.Second)
	defer c.Close()
	if err := c.DefinePool(ctx, "term", definition(1_000_000)); err != nil {
		t.Fatal(err)
	}
	const rounds = 5
	var executedUnanswered, dropped int
	for round := range rounds {
		w := DefaultWorkload([]string{svc.HTTPURL}, 16)
		w.Pools = []PoolSpec{{ID: "term", Capacity: 1_000_000}}
		w.Hold, w.Confirm, w.Release, w.Read = 1, 0, 0, 0
		w.Extend, w.Book, w.PartialShare = 0, 0, 0 // the mix before bookings
		rec := NewRecorder()
		tr := w.Start(rec)
		if err := tr.WaitOK(ctx, 100); err != nil {
			t.Fatal(err)
		}
		if code, _ := svc.Term(10 * time.Second); code != 0 {
			t.Fatalf("round %d: exit code %d", round, code)
		}
		tr.Stop()
		svc.Restart(t)
		for _, op := range rec.All() {
			if op.Outcome != Unknown || unknownKind(op) != "dropped" {
				continue
			}
			dropped++
			if _, found, err := c.GetReservation(ctx, op.Pool, op.ReservationID); err != nil {
				t.Fatal(err)
			} else if found {
				executedUnanswered++
				t.Logf("round %d: hold %s was stored but its client got: %s", round, op.ReservationID, op.Err)
			}
		}
	}
	t.Logf("FIGURES %s: %d SIGTERMs under load: %d requests dropped, %d of them executed", t.Name(), rounds, dropped, executedUnanswered)
	if executedUnanswered > 0 {
		t.Errorf("%d holds were stored but never answered across %d SIGTERMs", executedUnanswered, rounds)
	}
}
