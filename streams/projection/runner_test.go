package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/nats-io/nats.go"
)

func TestReadModelsEqualReplay(t *testing.T) {
	e := newEnv(t)
	svc := e.service(t)
	a := e.startModels(t, projection.DurableName("views", region, "a"))

	accepted := e.traffic(t, svc, 1, 100, 5000)
	var wg sync.WaitGroup
	wg.Go(func() { accepted += e.traffic(t, svc, 2, 100, 5000) })
	// Mid-traffic: run a's runner again over the same models (it resumes
	// after its position), and start a second set from scratch.
	a.stop(t)
	a.start(t)
	b := e.startModels(t, projection.DurableName("views", region, "b"))
	wg.Wait()
	svc.Close()
	if accepted < 3000 {
		t.Fatalf("only %d of 10000 commands accepted: the workload proves little", accepted)
	}
	e.check(t, a)
	e.check(t, b)

	// An operator deletes a's consumer while it runs: it is recreated and a
	// keeps up with later traffic.
	ctx := context.Background()
	if err := e.js.DeleteConsumer(ctx, e.store.StreamName(), a.runner.Durable()); err != nil {
		t.Fatal(err)
	}
	svc2 := e.service(t)
	e.traffic(t, svc2, 3, 100, 1000)
	svc2.Close()
	e.check(t, a)

	// A new process: fresh models on a's durable, whose ack floor is at the
	// end of the stream, must still rebuild from the first event.
	a.stop(t)
	c := e.startModels(t, a.runner.Durable())
	e.check(t, c)
	st, err := c.runner.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Lag != 0 || st.Position != st.LastSeq || st.Poison != 0 {
		t.Fatalf("status = %+v, want no lag and no poison", st)
	}
}

func TestWaitForOwnWrite(t *testing.T) {
	e := newEnv(t)
	svc := e.service(t)
	m := e.startModels(t, "wait")
	ctx := context.Background()
	if _, err := svc.Execute(ctx, "p1", capacity.DefinePool{Pool: "p1", Region: region, Kind: "delivery",
		StartsAt: epoch.Add(time.Hour), EndsAt: epoch.Add(2 * time.Hour), Capacity: 10}); err != nil {
		t.Fatal(err)
	}
	res, err := svc.Execute(ctx, "p1", capacity.Hold{ReservationID: "r1", Quantity: 3, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	written := res.Pool.Version
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.runner.WaitFor(waitCtx, written); err != nil {
		t.Fatalf("WaitFor(%d): %v", written, err)
	}
	v, pos, ok := m.availability.Pool("p1", e.clock.Now())
	if !ok || pos < written || v.Held != 3 || v.Available != 7 || v.Version != written {
		t.Fatalf("after WaitFor(%d): pool = %+v at position %d", written, v, pos)
	}
	if matches, _ := m.reservations.Lookup("r1", e.clock.Now()); len(matches) != 1 || matches[0].Pool != "p1" {
		t.Fatalf("Lookup(r1) = %+v", matches)
	}
	// The hold lapses at its deadline in the model, before any Expired event.
	if v, _, _ := m.availability.Pool("p1", e.clock.Now().Add(time.Minute)); v.Held != 0 || v.Available != 10 {
		t.Fatalf("after the deadline: pool = %+v, want nothing held", v)
	}

	never, cancelNever := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelNever()
	start := time.Now()
	if err := m.runner.WaitFor(never, written+1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor(a position never written) = %v, want deadline exceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("WaitFor timed out after %v", took)
	}
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		st, err := m.runner.Status(ctx)
		if err == nil && (st.Lag != 0 || st.AckFloor != written) {
			err = fmt.Errorf("status %+v, want lag 0 and ack floor %d", st, written)
		}
		return err
	})
}

func TestPoisonIsSkippedAndCounted(t *testing.T) {
	e := newEnv(t)
	svc := e.service(t)
	m := e.startModels(t, "poison")
	ctx := context.Background()
	e.traffic(t, svc, 4, 10, 300)
	bogus := nats.NewMsg(e.store.Subject("poisoned"))
	bogus.Header.Set(streams.HeaderEventType, "capacity.bogus.happened")
	bogus.Header.Set(streams.HeaderEventVersion, "1")
	bogus.Data = []byte("not json")
	if _, err := e.js.PublishMsg(ctx, bogus); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(ctx, e.store.Subject("headerless"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	e.traffic(t, svc, 5, 10, 300)
	svc.Close()
	e.check(t, m)
	if st, _ := m.runner.Status(ctx); st.Poison != 2 {
		t.Fatalf("poison = %d, want 2", st.Poison)
	}
}

func TestRedeliveryDoesNotDoubleCount(t *testing.T) {
	e := newEnv(t)
	svc := e.service(t)
	ctx := context.Background()
	e.traffic(t, svc, 6, 5, 200)
	svc.Close()
	last, err := e.store.StreamLastSeq(ctx)
	if err != nil || last < 40 {
		t.Fatalf("stream last seq %d, %v: want >= 40 events", last, err)
	}

	// The handler fails once at seq 10 (retried in place) and blocks at
	// seq 20 until the server has redelivered unacked messages (AckWait).
	m := newModels()
	apply := projection.Apply(m.models)
	failing, failed := errOnce(apply, 10)
	unblock := make(chan struct{})
	var blockOnce sync.Once
	handler := func(ctx context.Context, ev projection.Event) error {
		if ev.Seq == 20 {
			blocked := false
			blockOnce.Do(func() { blocked = true })
			if blocked {
				select {
				case <-unblock:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return failing(ctx, ev)
	}
	r, err := projection.New(e.js, e.store.StreamName(), "redelivery", handler,
		projection.WithAckWait(200*time.Millisecond), projection.WithBatch(500))
	if err != nil {
		t.Fatal(err)
	}
	m.runner = r
	m.start(t)
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		cons, err := e.js.Consumer(ctx, e.store.StreamName(), "redelivery")
		if err != nil {
			return err
		}
		if n := cons.CachedInfo().NumRedelivered; n == 0 {
			return fmt.Errorf("nothing redelivered yet")
		}
		return nil
	})
	close(unblock)
	e.check(t, m)
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Redelivered == 0 || st.Retries != 1 || failed.Load() != 1 {
		t.Fatalf("status = %+v, failed %d: want redeliveries and exactly one retry", st, failed.Load())
	}
}
