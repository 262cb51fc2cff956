package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Two instances on one NATS, a client behind a load balancer: whatever
// instance answers must answer from the pool's current history. Writes are
// safe (an append with a stale expected sequence is refused and decided
// again), but a command that writes nothing (a refusal, or a no-op) is
// answered from the instance's in-memory state without asking the store
// whether the pool moved on, as reads do. These tests pin that down.

// twoInstances starts two capacityd on one nats-server, defines a pool of
// the given capacity through a and loads it into b.
func twoInstances(t *testing.T, capacity int) (a, b *Client) {
	t.Helper()
	nats := startNATS(t, 1)
	svcA := startCapacityd(t, capacitydOpts{Name: "capacityd-a", NATSURL: nats.URLs()})
	svcB := startCapacityd(t, capacitydOpts{Name: "capacityd-b", NATSURL: nats.URLs()})
	a, b = NewClient(svcA.HTTPURL, 10*time.Second), NewClient(svcB.HTTPURL, 10*time.Second)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	ctx := context.Background()
	if err := a.DefinePool(ctx, "lb", definition(capacity)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetPool(ctx, "lb"); err != nil { // b now has the pool in memory
		t.Fatal(err)
	}
	return a, b
}

// TestTwoInstancesConfirmThroughOther: hold through a, confirm through b.
func TestTwoInstancesConfirmThroughOther(t *testing.T) {
	a, b := twoInstances(t, 10)
	ctx := context.Background()
	want(t, "hold through a", a.Do(ctx, "POST", "/v1/pools/lb/holds", HoldRequest{ReservationID: "x1", Quantity: 1, TTL: "1h"}, nil), 201, "")
	r := b.Do(ctx, "POST", "/v1/pools/lb/reservations/x1/confirm", nil, nil)
	if r.Status != 200 {
		t.Fatalf("confirm through b of a hold made through a: status %d %s, want 200 "+
			"(b answered from its stale in-memory pool: a command that writes nothing skips the tail check reads get)",
			r.Status, truncate(r.Body, 200))
	}
}

// TestTwoInstancesRefusalIsCurrent: fill the pool through b, release
// through a, hold through b: it fits, so it must not be refused.
func TestTwoInstancesRefusalIsCurrent(t *testing.T) {
	a, b := twoInstances(t, 1)
	ctx := context.Background()
	want(t, "hold through a", a.Do(ctx, "POST", "/v1/pools/lb/holds", HoldRequest{ReservationID: "y1", Quantity: 1, TTL: "1h"}, nil), 201, "")
	want(t, "pool full, through b", b.Do(ctx, "POST", "/v1/pools/lb/holds", HoldRequest{ReservationID: "y2", Quantity: 1, TTL: "1h"}, nil), 409, "insufficient-capacity")
	want(t, "release through a", a.Do(ctx, "POST", "/v1/pools/lb/reservations/y1/release", nil, nil), 200, "")
	r := b.Do(ctx, "POST", "/v1/pools/lb/holds", HoldRequest{ReservationID: "y3", Quantity: 1, TTL: "1h"}, nil)
	if r.Status != 201 {
		doc, _ := b.GetPool(ctx, "lb")
		t.Fatalf("hold through b after a freed the unit: status %d %s, want 201; b's GET says %s",
			r.Status, truncate(r.Body, 200), fmt.Sprintf("held=%d available=%d", doc.Held, doc.Available))
	}
}
