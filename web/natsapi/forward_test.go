package natsapi_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/e2e/stacktest"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/rs/zerolog"
)

// regionPair runs regions a and b (b a leaf of a, with the region link's
// deny list), the write side and service of each, and returns b's router
// (which believes pools named a-* are a's) and a's stack.
func regionPair(t *testing.T) (*natsapi.Router, *stacktest.Stack, func()) {
	t.Helper()
	sa := natstest.RunServer(t, natstest.Region("a"))
	sb := natstest.RunServer(t, natstest.Region("b"), natstest.LeafTo(sa, streams.LinkDeny()...))
	natstest.WaitLeaf(t, sb, 1)
	stA := stacktest.NewStack(t, sa, "a", pools.Options{Region: "a"})
	stB := stacktest.NewStack(t, sb, "b", pools.Options{Region: "b"})
	writer := func(pool string) string {
		if len(pool) > 2 && pool[:2] == "a-" {
			return "a"
		}
		return "b"
	}
	ncA, _ := natstest.Connect(t, sa)
	svcA, err := natsapi.New(ncA, natsapi.Config{Region: "a", Pools: stA.Service, Writer: func(string) string { return "a" }, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	stopA := func() { _ = svcA.Close() }
	t.Cleanup(stopA)
	ncB, _ := natstest.Connect(t, sb)
	router := natsapi.NewRouter(stB.Service, ncB, "b", writer, 500*time.Millisecond)
	// The service's subscriptions reach b over the leaf link.
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		_, err := router.Pool(context.Background(), "a-none")
		if capacity.ErrorCode(err) != capacity.ENOTFOUND {
			return fmt.Errorf("a's service not reachable from b yet: %v", err)
		}
		return nil
	})
	return router, stA, stopA
}

func TestRouterForwardsToTheWriterRegion(t *testing.T) {
	router, stA, stopA := regionPair(t)
	ctx := context.Background()
	def := capacity.DefinePool{Pool: "a-p", Region: "north", Kind: "delivery",
		StartsAt: time.Date(2099, 5, 1, 18, 0, 0, 0, time.UTC), EndsAt: time.Date(2099, 5, 1, 19, 0, 0, 0, time.UTC), Capacity: 3}
	if _, err := router.Execute(ctx, "a-p", def); err != nil {
		t.Fatalf("forwarded define: %v", err)
	}
	res, err := router.Execute(ctx, "a-p", capacity.Hold{ReservationID: "r1", Quantity: 2, TTL: time.Minute})
	if err != nil {
		t.Fatalf("forwarded hold: %v", err)
	}
	if got, want := res.Pool.HomeRegion, "a"; got != want {
		t.Errorf("home_region = %q, want %q", got, want)
	}
	if res.Reservation == nil || res.Reservation.Quantity != 2 || !res.Written {
		t.Errorf("result = %+v, want a written hold of 2", res)
	}
	// A refusal comes back as the domain error it was.
	_, err = router.Execute(ctx, "a-p", capacity.Hold{ReservationID: "r2", Quantity: 2, TTL: time.Minute})
	if got, want := capacity.ErrorCode(err), capacity.EINSUFFICIENT; got != want {
		t.Errorf("hold beyond capacity: code %q (%v), want %q", got, err, want)
	}
	// The hold is in a's stream: the write happened there.
	seq, err := stA.Events.LastSeq(ctx, "a-p")
	if err != nil || seq == 0 {
		t.Fatalf("a's stream has nothing for a-p (seq %d, %v)", seq, err)
	}
	// Bookings go the same way.
	b, err := router.Book(ctx, capacity.Book{BookingID: "bk1", Items: []capacity.BookingItem{{Pool: "a-p", Quantity: 1}}, TTL: time.Minute})
	if err != nil || !b.Written {
		t.Fatalf("forwarded booking: %+v, %v", b, err)
	}
	// With a's service gone, b answers 503 region-unavailable at once.
	stopA()
	start := time.Now()
	_, err = router.Execute(ctx, "a-p", capacity.Release{ReservationID: "r1"})
	if got, want := capacity.ErrorCode(err), capacity.EREGION; got != want {
		t.Fatalf("write with a down: code %q (%v), want %q", got, err, want)
	}
	if got, want := capacity.ErrorRegion(err), "a"; got != want {
		t.Errorf("region of the refusal = %q, want %q", got, want)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refusal took %v, want well under the 500 ms timeout plus slack", took)
	}
	var ce *capacity.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err %T, want *capacity.Error", err)
	}
}

func TestForwardRefusedByARegionThatDoesNotWrite(t *testing.T) {
	s := natstest.RunServer(t, natstest.Region("a"))
	st := stacktest.NewStack(t, s, "a", pools.Options{Region: "a"})
	nc, _ := natstest.Connect(t, s)
	// Region a was promoted away: b writes its pools now.
	svc, err := natsapi.New(nc, natsapi.Config{Region: "a", Pools: st.Service, Writer: func(string) string { return "b" }, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	ncB, _ := natstest.Connect(t, s)
	router := natsapi.NewRouter(st.Service, ncB, "b", func(string) string { return "a" }, time.Second)
	_, err = router.Execute(context.Background(), "p", capacity.Hold{ReservationID: "r", Quantity: 1, TTL: time.Minute})
	if got, want := capacity.ErrorCode(err), capacity.EREGION; got != want {
		t.Fatalf("code %q (%v), want %q", got, err, want)
	}
	if seq, _ := st.Events.LastSeq(context.Background(), "p"); seq != 0 {
		t.Errorf("a fenced region wrote the forwarded hold (seq %d)", seq)
	}
}
