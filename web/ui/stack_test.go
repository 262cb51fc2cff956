package ui

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/pools/poolstest"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/e2e/stacktest"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/capacityd/capacityd/web"
	"github.com/rs/zerolog"
)

// epoch is the fake clock's start: a Monday morning, UTC.
var epoch = time.Date(2030, 3, 4, 6, 0, 0, 0, time.UTC)

// stack is the real thing behind the UI: an embedded NATS server, the
// JetStream event store, KV snapshots, the pools service, and the board and
// availability read models fed by a projection runner.
type stack struct {
	clock  *poolstest.Clock
	svc    *pools.Service
	events *streams.PoolEvents
	board  *views.Board
	avail  *views.Availability
	runner *projection.Runner
	logs   *poolstest.LogBuffer
	ui     *UI
	// handler is the UI as capacityd serves it: routed by web.NewServer.
	handler http.Handler
}

// newStack starts the stack and the UI over it; everything stops when the
// test ends.
func newStack(t testing.TB) *stack {
	t.Helper()
	s := &stack{clock: poolstest.NewClock(epoch), board: views.NewBoard(), avail: views.NewAvailability(), logs: &poolstest.LogBuffer{}}
	st := stacktest.NewStack(t, natstest.RunServer(t), "test", pools.Options{Now: s.clock.Now})
	s.svc, s.events = st.Service, st.Events
	var err error
	s.runner, err = projection.New(st.JS, st.Store.StreamName(), "ui_test", projection.Apply(s.board, s.avail))
	if err != nil {
		t.Fatalf("projection.New: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.runner.Run(runCtx); err != nil {
			t.Errorf("projection runner: %v", err)
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })
	s.ui, err = New(Config{
		Pools: s.svc, History: s.events, Board: s.board, Availability: s.avail,
		Logger: zerolog.New(s.logs), Now: s.clock.Now, Heartbeat: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("ui.New: %v", err)
	}
	s.handler = s.mount(s.ui)
	return s
}

// mount serves u and the API over the stack as capacityd does, through
// web.NewServer.
func (s *stack) mount(u *UI) http.Handler {
	return web.NewServer(web.Config{Pools: s.svc, History: s.events, UI: u, Now: s.clock.Now, Logger: zerolog.New(s.logs)})
}

// define defines a pool of the given region and kind starting at starts,
// lasting two hours.
func (s *stack) define(t testing.TB, id, region, kind string, starts time.Time, capacityUnits int) capacity.PoolView {
	t.Helper()
	res, err := s.svc.Execute(context.Background(), id, capacity.DefinePool{
		Pool: id, Region: region, Kind: kind, StartsAt: starts, EndsAt: starts.Add(2 * time.Hour), Capacity: capacityUnits,
	})
	if err != nil {
		t.Fatalf("define %s: %v", id, err)
	}
	return res.Pool
}

// hold holds quantity units of a pool for ten minutes.
func (s *stack) hold(t testing.TB, pool, id string, quantity int) capacity.PoolView {
	t.Helper()
	res, err := s.svc.Execute(context.Background(), pool, capacity.Hold{ReservationID: id, Quantity: quantity, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatalf("hold %s on %s: %v", id, pool, err)
	}
	return res.Pool
}

// change runs a ChangePool without a version condition.
func (s *stack) change(t testing.TB, pool string, cmd capacity.ChangePool) capacity.PoolView {
	t.Helper()
	res, err := s.svc.Execute(context.Background(), pool, cmd)
	if err != nil {
		t.Fatalf("change %s: %v", pool, err)
	}
	return res.Pool
}

// caughtUp waits until the read models reflect version.
func (s *stack) caughtUp(t testing.TB, version uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.runner.WaitFor(ctx, version); err != nil {
		t.Fatalf("read models did not reach %d: %v", version, err)
	}
}

// response is an answer read in full.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// get serves a GET through the UI.
func (s *stack) get(t testing.TB, target string) response {
	t.Helper()
	return serve(t, s.handler, httptest.NewRequest(http.MethodGet, target, nil))
}

// post serves a same-origin form POST through the UI.
func (s *stack) post(t testing.TB, target string, form url.Values) response {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+req.Host)
	return serve(t, s.handler, req)
}

func serve(t testing.TB, h http.Handler, req *http.Request) response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return response{Status: rec.Code, Header: rec.Header(), Body: string(body)}
}

// wantStatus fails the test unless the response has the status.
func wantStatus(t testing.TB, res response, status int) {
	t.Helper()
	if res.Status != status {
		t.Fatalf("status = %d, want %d; body:\n%s", res.Status, status, clip(res.Body))
	}
}

// wantBody fails the test unless the body holds every string.
func wantBody(t testing.TB, res response, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(res.Body, p) {
			t.Errorf("body lacks %q; body:\n%s", p, clip(res.Body))
		}
	}
}

// wantNoBody fails the test if the body holds any of the strings.
func wantNoBody(t testing.TB, res response, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if strings.Contains(res.Body, p) {
			t.Errorf("body holds %q", p)
		}
	}
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "…"
	}
	return s
}

// mustRequest returns a request for a handler test.
func mustRequest(t testing.TB, method, target string) *http.Request {
	t.Helper()
	return httptest.NewRequest(method, target, nil)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
