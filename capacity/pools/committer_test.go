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

// Under concurrency over many pools, the committer puts several pools'
// commits in one batch, and every hold is answered after its batch.
func TestBatchAcrossPoolsUnderConcurrency(t *testing.T) {
	store := newMemStore()
	store.delay = time.Millisecond // a write costs something, so work piles up behind it
	svc := pools.New(store, noSnapshots{}, pools.Options{BatchAcrossPools: true, MinBatchCommits: 1, Now: func() time.Time { return epoch }})
	defer svc.Close()
	const poolCount, workers, perWorker = 100, 32, 20
	for i := range poolCount {
		define(t, svc, fmt.Sprintf("p%d", i), 1000, epoch)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				pool := fmt.Sprintf("p%d", (w*perWorker+i)%poolCount)
				if _, err := svc.Execute(context.Background(), pool, capacity.Hold{ReservationID: fmt.Sprintf("r%d-%d", w, i), Quantity: 1, TTL: time.Minute}); err != nil {
					t.Errorf("hold on %s: %v", pool, err)
				}
			}
		})
	}
	wg.Wait()
	held := 0
	for i := range poolCount {
		for _, e := range store.events(fmt.Sprintf("p%d", i)) {
			if _, ok := e.(capacity.Held); ok {
				held++
			}
		}
	}
	if held != workers*perWorker {
		t.Fatalf("holds stored = %d, want %d", held, workers*perWorker)
	}
	st := svc.Stats()
	if st.Batches == 0 || st.BatchedCommits < 2*st.Batches {
		t.Fatalf("stats %+v: no cross-pool batching under %d concurrent callers", st, workers)
	}
	t.Logf("%d batches carried %d commits (%.1f a batch); %d appends in all", st.Batches, st.BatchedCommits, float64(st.BatchedCommits)/float64(st.Batches), store.commitCount())
}

// A pool that another writer moved fails only its own commit in a shared
// batch: the other pools' commits go out again at once and succeed, and the
// moved pool reloads and succeeds on its own.
func TestBatchConflictFailsOnlyThePoolThatMoved(t *testing.T) {
	store := newMemStore()
	svc := pools.New(store, noSnapshots{}, pools.Options{BatchAcrossPools: true, MinBatchCommits: 1, Now: func() time.Time { return epoch }})
	defer svc.Close()
	for _, p := range []string{"a", "b", "c", "d"} {
		define(t, svc, p, 10, epoch)
	}
	// Another instance writes to b behind this one's back.
	if _, err := store.write("b", store.lastSeq("b"), []capacity.Event{capacity.Held{ReservationID: "other", Quantity: 1, TTL: time.Minute, ExpiresAt: epoch.Add(time.Minute), At: epoch}}); err != nil {
		t.Fatal(err)
	}

	// Hold the committer on d's append until a, b and c are queued behind it.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	store.setHook(func(context.Context, string, uint64, []capacity.Event) error {
		once.Do(func() { close(entered); <-release })
		return nil
	})
	hold := func(pool string, errs chan<- error) {
		_, err := svc.Execute(context.Background(), pool, capacity.Hold{ReservationID: "r-" + pool, Quantity: 1, TTL: time.Minute})
		errs <- err
	}
	errs := make(chan error, 4)
	go hold("d", errs)
	<-entered
	for _, p := range []string{"a", "b", "c"} {
		go hold(p, errs)
	}
	natstest.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := svc.QueuedCommits(); n != 3 {
			return fmt.Errorf("%d commits queued, want 3", n)
		}
		return nil
	})
	close(release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("hold: %v", err)
		}
	}
	for _, p := range []string{"a", "b", "c", "d"} {
		if res, err := svc.Reservation(context.Background(), p, "r-"+p); err != nil || res.Status != capacity.StatusHeld {
			t.Fatalf("reservation r-%s = %+v, %v", p, res, err)
		}
	}
	if got := store.batchSizes(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("successful batches = %v, want one of 2 commits (a and c, again without b)", got)
	}
	if st := svc.Stats(); st.Conflicts != 1 {
		t.Fatalf("conflicts = %d, want 1 (b)", st.Conflicts)
	}
}

// Without a committer for every commit, bookings waiting together still
// share an atomic batch: a booking is a batch whatever it shares, and a
// batch's cost is nearly all fixed. Disjoint pools: each booking's parts
// are in pools no other booking touches.
func TestBookingsShareBatches(t *testing.T) {
	store := newMemStore()
	store.delay = 2 * time.Millisecond // a batch costs something, so bookings pile up behind it
	svc := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch }})
	defer svc.Close()
	const workers, perWorker = 16, 10
	for w := range workers {
		define(t, svc, fmt.Sprintf("slot%d", w), 1000, epoch)
		define(t, svc, fmt.Sprintf("pick%d", w), 1000, epoch)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				id := fmt.Sprintf("b%d-%d", w, i)
				if _, err := svc.Book(context.Background(), book(id, items(fmt.Sprintf("slot%d", w), 1, fmt.Sprintf("pick%d", w), 1))); err != nil {
					t.Errorf("booking %s: %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	for w := range workers {
		for i := range perWorker {
			id := fmt.Sprintf("b%d-%d", w, i)
			if got := bookingWritten(store, id, fmt.Sprintf("slot%d", w), fmt.Sprintf("pick%d", w)); len(got) != 2 {
				t.Fatalf("booking %s written in %v, want both pools", id, got)
			}
		}
	}
	sizes := store.batchSizes()
	if len(sizes) >= workers*perWorker {
		t.Fatalf("%d bookings took %d atomic batches: bookings waiting together did not share one", workers*perWorker, len(sizes))
	}
	t.Logf("%d bookings in %d atomic batches", workers*perWorker, len(sizes))
}
