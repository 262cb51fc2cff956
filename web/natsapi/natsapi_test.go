package natsapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/e2e/stacktest"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
)

// start runs the real stack and the service over it, and returns a client
// on a connection of its own.
func start(t *testing.T) (*natsapi.Client, *nats.Conn) {
	t.Helper()
	s := natstest.RunServer(t)
	st := stacktest.NewStack(t, s, "test", pools.Options{})
	nc, _ := natstest.Connect(t, s)
	svc, err := natsapi.New(nc, natsapi.Config{Region: "test", Pools: st.Service, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	client, _ := natstest.Connect(t, s)
	return natsapi.NewClient(client, "test"), client
}

func define(t *testing.T, c *natsapi.Client, pool string, units int) natsapi.Pool {
	t.Helper()
	p, err := c.Define(context.Background(), pool, json.RawMessage(fmt.Sprintf(
		`{"region":"north","kind":"delivery","starts_at":"2099-05-01T18:00:00Z","ends_at":"2099-05-01T19:00:00Z","capacity":%d}`, units)))
	if err != nil {
		t.Fatalf("define %s: %v", pool, err)
	}
	return p
}

// wantError fails unless err is a refusal with the status and code.
func wantError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var e *natsapi.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want a %d %s refusal", err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("refusal = %d %s (%s), want %d %s", e.Status, e.Code, e.Detail, status, code)
	}
	var p map[string]any
	if json.Unmarshal(e.Problem, &p) != nil || p["type"] != "https://capacityd.dev/problems/"+code {
		t.Fatalf("problem = %s", e.Problem)
	}
}

func TestHoldConfirmRelease(t *testing.T) {
	c, _ := start(t)
	ctx := context.Background()
	define(t, c, "p1", 3)
	r, err := c.Hold(ctx, "p1", natsapi.HoldRequest{ReservationID: "r1", Quantity: 2, TTL: "5m"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "held" || r.Quantity != 2 || r.TTL != "5m0s" || r.PoolVersion != 2 {
		t.Fatalf("hold = %+v", r)
	}
	again, err := c.Hold(ctx, "p1", natsapi.HoldRequest{ReservationID: "r1", Quantity: 2, TTL: "5m"})
	if err != nil || again.Version != r.Version {
		t.Fatalf("repeat = %+v, %v; want the first hold", again, err)
	}
	_, err = c.Hold(ctx, "p1", natsapi.HoldRequest{ReservationID: "r2", Quantity: 2})
	wantError(t, err, 409, "insufficient-capacity")
	_, err = c.Hold(ctx, "p1", natsapi.HoldRequest{ReservationID: "r1", Quantity: 1, TTL: "5m"})
	wantError(t, err, 409, "conflict")

	if r, err = c.Confirm(ctx, "p1", "r1"); err != nil || r.Status != "confirmed" {
		t.Fatalf("confirm = %+v, %v", r, err)
	}
	if r, err = c.Release(ctx, "p1", "r1"); err != nil || r.Status != "released" {
		t.Fatalf("release = %+v, %v", r, err)
	}
	if r, err = c.Reservation(ctx, "p1", "r1"); err != nil || r.Status != "released" {
		t.Fatalf("reservation = %+v, %v", r, err)
	}
	p, err := c.Change(ctx, "p1", json.RawMessage(`{"overbook":2}`), 0)
	if err != nil || p.Overbook != 2 || p.Available != 5 {
		t.Fatalf("change = %+v, %v", p, err)
	}
	_, err = c.Change(ctx, "p1", json.RawMessage(`{"capacity":1}`), 1)
	wantError(t, err, 412, "precondition-failed")
}

// Bad input is refused with the HTTP API's problems and changes nothing.
func TestBadRequests(t *testing.T) {
	c, _ := start(t)
	ctx := context.Background()
	version := define(t, c, "bad", 3).Version
	long := strings.Repeat("x", 65)
	tests := []struct {
		name   string
		op     string
		tokens []string
		body   string
		status int
		code   string
	}{
		{"malformed", natsapi.OpHold, []string{"bad"}, `{"reservation_id":`, 400, "invalid-request"},
		{"unknown field", natsapi.OpHold, []string{"bad"}, `{"reservation_id":"a","quantity":1,"x":1}`, 400, "invalid-request"},
		{"no quantity", natsapi.OpHold, []string{"bad"}, `{"reservation_id":"a"}`, 400, "invalid-request"},
		{"bad ttl", natsapi.OpHold, []string{"bad"}, `{"reservation_id":"a","quantity":1,"ttl":"soon"}`, 400, "invalid-request"},
		{"empty hold", natsapi.OpHold, []string{"bad"}, ``, 400, "invalid-request"},
		{"pool id too long", natsapi.OpHold, []string{long}, `{"reservation_id":"a","quantity":1}`, 400, "invalid-request"},
		{"confirm with a body", natsapi.OpConfirm, []string{"bad", "a"}, `yes`, 400, "invalid-request"},
		{"confirm unknown", natsapi.OpConfirm, []string{"bad", "nope"}, ``, 404, "not-found"},
		{"hold on unknown pool", natsapi.OpHold, []string{"nope"}, `{"reservation_id":"a","quantity":1}`, 404, "not-found"},
		{"change nothing", natsapi.OpChange, []string{"bad"}, `{}`, 400, "invalid-request"},
		{"define differently", natsapi.OpDefine, []string{"bad"}, `{"region":"north","kind":"delivery","starts_at":"2099-05-01T18:00:00Z","ends_at":"2099-05-01T19:00:00Z","capacity":4}`, 409, "conflict"},
		{"availability without a read model", natsapi.OpAvailability, nil, `{"region":"north"}`, 503, "unavailable"},
		{"availability bad query", natsapi.OpAvailability, nil, `{"from":"noon"}`, 400, "invalid-request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Request(ctx, tc.op, tc.tokens, []byte(tc.body), nil)
			wantError(t, err, tc.status, tc.code)
			p, err := c.Pool(ctx, "bad")
			if err != nil || p.Version != version {
				t.Fatalf("pool after a bad request = %+v, %v; want version %d", p, err, version)
			}
		})
	}
}

// Many concurrent holds over NATS: exactly capacity of them win, so the
// service answers concurrently (group commit) and never overbooks.
func TestConcurrentHolds(t *testing.T) {
	c, _ := start(t)
	define(t, c, "hot", 100)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := c.Hold(ctx, "hot", natsapi.HoldRequest{ReservationID: fmt.Sprintf("r%d", i), Quantity: 1})
			var e *natsapi.Error
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &e) && e.Code == "insufficient-capacity":
				refused.Add(1)
			default:
				t.Errorf("hold %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 100 || refused.Load() != 200 {
		t.Fatalf("ok %d refused %d, want 100 and 200", ok.Load(), refused.Load())
	}
}

// The stock CLI's micro commands (ls, info, stats) are PING, INFO and
// STATS requests on $SRV subjects: the service answers them.
func TestMicroDiscovery(t *testing.T) {
	c, nc := start(t)
	define(t, c, "p1", 1)
	_, err := c.Hold(context.Background(), "p1", natsapi.HoldRequest{ReservationID: "r1", Quantity: 2})
	wantError(t, err, 409, "insufficient-capacity")

	request := func(verb micro.Verb, out any) {
		t.Helper()
		subject, err := micro.ControlSubject(verb, natsapi.ServiceName, "")
		if err != nil {
			t.Fatal(err)
		}
		msg, err := nc.Request(subject, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if err := json.Unmarshal(msg.Data, out); err != nil {
			t.Fatalf("%s: %v in %s", subject, err, msg.Data)
		}
	}
	var ping micro.Ping
	request(micro.PingVerb, &ping)
	if ping.Name != natsapi.ServiceName || ping.Version != natsapi.Version {
		t.Fatalf("ping = %+v", ping)
	}
	var info micro.Info
	request(micro.InfoVerb, &info)
	subjects := map[string]string{}
	for _, e := range info.Endpoints {
		subjects[e.Name] = e.Subject
	}
	for op, want := range map[string]string{
		natsapi.OpHold: "capacityd.test.hold.*", natsapi.OpConfirm: "capacityd.test.confirm.*.*", natsapi.OpRelease: "capacityd.test.release.*.*",
		natsapi.OpPool: "capacityd.test.pool.*", natsapi.OpReservation: "capacityd.test.reservation.*.*", natsapi.OpDefine: "capacityd.test.define.*",
		natsapi.OpChange: "capacityd.test.change.*", natsapi.OpAvailability: "capacityd.test.availability",
		natsapi.OpFigures: "capacityd.test.figures",
	} {
		if subjects[op] != want {
			t.Errorf("endpoint %s subject = %q, want %q", op, subjects[op], want)
		}
	}
	if info.Metadata["region"] != "test" {
		t.Errorf("metadata = %v", info.Metadata)
	}
	var stats micro.Stats
	request(micro.StatsVerb, &stats)
	for _, e := range stats.Endpoints {
		if e.Name != natsapi.OpHold {
			continue
		}
		var d struct {
			Answered, Errors int64
		}
		if err := json.Unmarshal(e.Data, &d); err != nil || d.Answered != 1 || d.Errors != 1 || e.NumRequests != 1 {
			t.Errorf("hold stats = %+v, data %s", e, e.Data)
		}
		return
	}
	t.Errorf("no stats of the hold endpoint: %+v", stats)
}

// TestFiguresRefusesBadRequests: the figures operation checks its body
// before the read models (none here: 503 once the request is valid).
func TestFiguresRefusesBadRequests(t *testing.T) {
	c, _ := start(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"not JSON", `{`, 400, "invalid-request"},
		{"no home", `{}`, 400, "invalid-request"},
		{"unknown field", `{"home":"a","region":"b"}`, 400, "invalid-request"},
		{"bad home", `{"home":"a.b"}`, 400, "invalid-request"},
		{"bad after", `{"home":"a","after":"x y"}`, 400, "invalid-request"},
		{"limit too big", `{"home":"a","limit":100000}`, 400, "invalid-request"},
		{"no read models", `{"home":"a"}`, 503, "unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Request(ctx, natsapi.OpFigures, nil, []byte(tc.body), nil)
			wantError(t, err, tc.status, tc.code)
		})
	}
}
