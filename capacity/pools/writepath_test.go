package pools_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/streams/natstest"
)

// The write path's rare outcomes, produced on demand with the in-memory
// store (memstore_test.go).

// An append whose outcome is unknown answers its callers "unknown" and
// drops the pool's state: the next command reloads from the store, and sees
// the write if it did land.
func TestUnknownOutcomeThenReload(t *testing.T) {
	store := newMemStore()
	svc := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch }})
	defer svc.Close()
	define(t, svc, "p", 10, epoch)
	// The write lands, but the answer is lost.
	store.setHook(func(_ context.Context, pool string, expected uint64, events []capacity.Event) error {
		store.setHook(nil)
		if _, err := store.write(pool, expected, events); err != nil {
			return err
		}
		return fmt.Errorf("%w: the answer was lost", capacity.ErrUnknownOutcome)
	})
	_, err := svc.Execute(context.Background(), "p", capacity.Hold{ReservationID: "r1", Quantity: 3, TTL: time.Minute})
	if capacity.ErrorCode(err) != capacity.EUNAVAILABLE {
		t.Fatalf("hold with a lost answer = %v, want %s (outcome unknown)", err, capacity.EUNAVAILABLE)
	}
	loads := svc.Stats().Loads
	r, err := svc.Reservation(context.Background(), "p", "r1")
	if err != nil || r.Status != capacity.StatusHeld || r.Quantity != 3 {
		t.Fatalf("after the unknown outcome r1 = %+v, %v; want the stored hold", r, err)
	}
	if svc.Stats().Loads != loads+1 {
		t.Fatalf("loads %d -> %d: the pool was not reloaded after the unknown outcome", loads, svc.Stats().Loads)
	}
	// The retry of the same hold is answered as done, not held twice.
	if _, err := svc.Execute(context.Background(), "p", capacity.Hold{ReservationID: "r1", Quantity: 3, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if f, _ := svc.Pool(context.Background(), "p"); f.Held != 3 {
		t.Fatalf("held = %d after a retry, want 3", f.Held)
	}
}

// When other writers win every round, the batch gives up after
// MaxAttempts rounds with "too contended", having written nothing.
func TestAttemptsExhausted(t *testing.T) {
	store := newMemStore()
	svc := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch }, MaxAttempts: 3})
	defer svc.Close()
	define(t, svc, "p", 10, epoch)
	var rounds int
	store.setHook(func(_ context.Context, pool string, _ uint64, _ []capacity.Event) error {
		rounds++
		// Another instance writes first, every time.
		other := capacity.Released{ReservationID: "nobody", At: epoch}
		if _, err := store.write(pool, store.lastSeq(pool), []capacity.Event{other}); err != nil {
			return err
		}
		return nil // the store's own check now refuses this append
	})
	_, err := svc.Execute(context.Background(), "p", capacity.Hold{ReservationID: "r1", Quantity: 1, TTL: time.Minute})
	if capacity.ErrorCode(err) != capacity.EUNAVAILABLE {
		t.Fatalf("hold that never wins = %v, want %s", err, capacity.EUNAVAILABLE)
	}
	if rounds != 3 {
		t.Fatalf("append rounds = %d, want MaxAttempts = 3", rounds)
	}
	if st := svc.Stats(); st.Conflicts != 2 {
		t.Fatalf("conflicts counted = %d, want 2 (the third gives up)", st.Conflicts)
	}
	for _, e := range store.events("p") {
		if _, ok := e.(capacity.Held); ok {
			t.Fatal("a hold was stored although every round lost")
		}
	}
}

// A batch whose events would exceed MaxEvents refuses the commands that do
// not fit ("batch full, try again") and stores the rest.
func TestBatchFull(t *testing.T) {
	store := newMemStore()
	svc := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch }, MaxEvents: 4})
	defer svc.Close()
	define(t, svc, "p", 100, epoch)
	// Hold the writer so that the holds queue up and go as one batch.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	store.setHook(func(context.Context, string, uint64, []capacity.Event) error {
		once.Do(func() { close(entered); <-release })
		return nil
	})
	errs := make(chan error, 11)
	go func() {
		_, err := svc.Execute(context.Background(), "p", capacity.Hold{ReservationID: "first", Quantity: 1, TTL: time.Minute})
		errs <- err
	}()
	<-entered
	for i := range 10 {
		go func() {
			_, err := svc.Execute(context.Background(), "p", capacity.Hold{ReservationID: fmt.Sprint("r", i), Quantity: 1, TTL: time.Minute})
			errs <- err
		}()
	}
	waitQueued(t, svc, "p", 10)
	close(release)
	full := 0
	for range 11 {
		switch err := <-errs; {
		case err == nil:
		case capacity.ErrorCode(err) == capacity.EUNAVAILABLE:
			full++
		default:
			t.Fatalf("hold: %v", err)
		}
	}
	held := 0
	for _, e := range store.events("p") {
		if _, ok := e.(capacity.Held); ok {
			held++
		}
	}
	if full != 6 || held != 5 {
		t.Fatalf("%d refused as batch full and %d stored, want 6 and 5 (first alone, then 4 of 10 in a batch of at most 4 events)", full, held)
	}
}

// waitQueued waits until n commands wait on the pool's writer.
func waitQueued(t *testing.T, svc *pools.Service, pool string, n int) {
	t.Helper()
	natstest.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if got := svc.Pending(pool); got != n {
			return fmt.Errorf("%d commands queued on %s, want %d", got, pool, n)
		}
		return nil
	})
}
