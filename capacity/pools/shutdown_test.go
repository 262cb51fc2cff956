package pools_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
)

// Close lets an append already under way finish: its callers get the real
// outcome (stored), not "unknown".
func TestCloseWaitsForAppendInFlight(t *testing.T) {
	store := newMemStore()
	svc := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch }})
	define(t, svc, "p1", 10, epoch)

	entered, release := make(chan struct{}), make(chan struct{})
	store.setHook(func(ctx context.Context, pool string, _ uint64, _ []capacity.Event) error {
		close(entered)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", capacity.ErrUnknownOutcome, ctx.Err())
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := svc.Execute(context.Background(), "p1", capacity.Hold{ReservationID: "r1", Quantity: 1, TTL: time.Minute})
		done <- err
	}()
	<-entered
	closed := make(chan struct{})
	go func() { svc.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while an append was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("hold in flight at Close = %v, want stored", err)
	}
	<-closed
	if got := len(store.events("p1")); got != 2 {
		t.Fatalf("events stored = %d, want 2 (defined, held)", got)
	}
}

// Callers racing Close are all answered, none is stranded: every Execute
// returns, long before the request timeout, and a command answered
// "shutting down" was not written.
func TestCloseStrandsNoCaller(t *testing.T) {
	for round := range 100 {
		store := newMemStore()
		svc := pools.New(store, noSnapshots{}, pools.Options{
			Now:            func() time.Time { return epoch },
			RequestTimeout: time.Hour, // only an answer may end a wait
		})
		define(t, svc, "p1", 1_000_000, epoch)

		var wg sync.WaitGroup
		var mu sync.Mutex
		refused := map[string]bool{}
		for w := range 64 {
			wg.Go(func() {
				for i := 0; ; i++ {
					id := fmt.Sprintf("r%d-%d", w, i)
					_, err := svc.Execute(context.Background(), "p1", capacity.Hold{ReservationID: id, Quantity: 1, TTL: time.Minute})
					if err != nil {
						if capacity.ErrorCode(err) != capacity.EUNAVAILABLE {
							t.Errorf("hold %s: %v", id, err)
						}
						mu.Lock()
						refused[id] = true
						mu.Unlock()
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond) // let some traffic through first
		svc.Close()
		waited := make(chan struct{})
		go func() { wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: callers still waiting 10 s after Close", round)
		}
		for _, e := range store.events("p1") {
			if id := capacity.ReservationID(e); refused[id] {
				t.Fatalf("round %d: %s was refused at shutdown but is stored", round, id)
			}
		}
	}
}

// A caller whose context has no deadline still gets an answer within the
// service's RequestTimeout when the store hangs.
func TestRequestTimeoutBoundsTheWait(t *testing.T) {
	store := newMemStore()
	svc := pools.New(store, noSnapshots{}, pools.Options{
		Now:            func() time.Time { return epoch },
		AppendTimeout:  time.Hour,
		RequestTimeout: 200 * time.Millisecond,
	})
	define(t, svc, "p1", 10, epoch)
	release := make(chan struct{})
	store.setHook(func(ctx context.Context, _ string, _ uint64, _ []capacity.Event) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return fmt.Errorf("%w: store hung", capacity.ErrUnknownOutcome)
	})
	start := time.Now()
	_, err := svc.Execute(context.Background(), "p1", capacity.Hold{ReservationID: "r1", Quantity: 1, TTL: time.Minute})
	if capacity.ErrorCode(err) != capacity.EUNAVAILABLE {
		t.Fatalf("hold with a hung store = %v, want %s", err, capacity.EUNAVAILABLE)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("waited %s for an answer", waited)
	}
	close(release)
	svc.Close()
}
