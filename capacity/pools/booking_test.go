package pools_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/pools/poolstest"
	"github.com/capacityd/capacityd/e2e/stacktest"
	"github.com/capacityd/capacityd/streams/natstest"
)

func items(pairs ...any) []capacity.BookingItem {
	var out []capacity.BookingItem
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, capacity.BookingItem{Pool: pairs[i].(string), Quantity: pairs[i+1].(int)})
	}
	return out
}

func book(id string, its []capacity.BookingItem) capacity.Book {
	return capacity.Book{BookingID: id, Items: its, TTL: time.Hour}
}

// bookingWritten reports, per pool, whether the pool's history has the
// booking's Held event.
func bookingWritten(store *memStore, id string, poolIDs ...string) map[string]bool {
	out := make(map[string]bool)
	for _, p := range poolIDs {
		for _, e := range store.events(p) {
			if h, ok := e.(capacity.Held); ok && h.ReservationID == id {
				out[p] = true
			}
		}
	}
	return out
}

// withAndWithoutCommitter runs f with each pools.Options' way to append.
func withAndWithoutCommitter(t *testing.T, f func(t *testing.T, opts pools.Options)) {
	for _, across := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch-across-pools=%v", across), func(t *testing.T) {
			f(t, pools.Options{Now: func() time.Time { return epoch }, BatchAcrossPools: across, MinBatchCommits: 1})
		})
	}
}

func TestBookingRefusedLeavesNothing(t *testing.T) {
	withAndWithoutCommitter(t, func(t *testing.T, opts pools.Options) {
		store := newMemStore()
		svc := pools.New(store, noSnapshots{}, opts)
		defer svc.Close()
		define(t, svc, "a", 10, epoch)
		define(t, svc, "b", 1, epoch)
		define(t, svc, "c", 5, epoch)
		before := map[string]uint64{"a": store.lastSeq("a"), "b": store.lastSeq("b"), "c": store.lastSeq("c")}

		tests := []struct {
			name  string
			items []capacity.BookingItem
			code  string
			pool  string
		}{
			{"one pool short", items("a", 2, "b", 2), capacity.EINSUFFICIENT, "b"},
			{"first short in the client's order", items("c", 6, "a", 11, "b", 2), capacity.EINSUFFICIENT, "c"},
			{"first short in the client's order, reversed", items("b", 2, "a", 11), capacity.EINSUFFICIENT, "b"},
			{"an unknown pool", items("a", 1, "nope", 1), capacity.ENOTFOUND, "nope"},
		}
		for i, tc := range tests {
			_, err := svc.Book(context.Background(), book(fmt.Sprintf("bk%d", i), tc.items))
			if capacity.ErrorCode(err) != tc.code || capacity.ErrorPool(err) != tc.pool {
				t.Fatalf("%s: Book = %v (pool %q), want %s naming %s", tc.name, err, capacity.ErrorPool(err), tc.code, tc.pool)
			}
		}
		for p, seq := range before {
			if got := store.lastSeq(p); got != seq {
				t.Fatalf("pool %s moved from %d to %d after refused bookings", p, seq, got)
			}
		}
		// A closed pool refuses the whole booking too.
		if _, err := svc.Execute(context.Background(), "c", capacity.ChangePool{Status: capacity.Closed}); err != nil {
			t.Fatal(err)
		}
		_, err := svc.Book(context.Background(), book("bk-closed", items("a", 1, "c", 1)))
		if capacity.ErrorCode(err) != capacity.ECLOSED || capacity.ErrorPool(err) != "c" {
			t.Fatalf("Book on a closed pool = %v", err)
		}
		if got := bookingWritten(store, "bk-closed", "a", "c"); len(got) != 0 {
			t.Fatalf("refused booking written in %v", got)
		}
		// The pools still answer.
		if _, err := svc.Book(context.Background(), book("bk-ok", items("a", 10, "b", 1))); err != nil {
			t.Fatalf("a booking that fits after refusals: %v", err)
		}
	})
}

func TestBookingLifecycle(t *testing.T) {
	withAndWithoutCommitter(t, func(t *testing.T, opts pools.Options) {
		store := newMemStore()
		svc := pools.New(store, noSnapshots{}, opts)
		defer svc.Close()
		define(t, svc, "slot", 10, epoch)
		define(t, svc, "pick", 10, epoch)
		ctx := context.Background()

		b, err := svc.Book(ctx, book("order-1", items("slot", 1, "pick", 3)))
		if err != nil {
			t.Fatal(err)
		}
		if !b.Written || b.Status != capacity.StatusHeld || len(b.Items) != 2 || b.Items[0].Pool != "slot" || b.Items[1].Quantity != 3 {
			t.Fatalf("booking = %+v", b)
		}
		if !b.ExpiresAt.Equal(epoch.Add(time.Hour)) {
			t.Fatalf("expires_at = %s", b.ExpiresAt)
		}
		for _, it := range b.Items {
			if it.Version != store.lastSeq(it.Pool) {
				t.Fatalf("item %+v, pool at %d", it, store.lastSeq(it.Pool))
			}
		}
		// Idempotent: the same body (items in any order) is the same booking.
		again, err := svc.Book(ctx, book("order-1", items("pick", 3, "slot", 1)))
		if err != nil || again.Written || again.Status != capacity.StatusHeld || again.Position() != b.Position() {
			t.Fatalf("same booking again = %+v, %v", again, err)
		}
		if _, err := svc.Book(ctx, book("order-1", items("slot", 2, "pick", 3))); capacity.ErrorCode(err) != capacity.ECONFLICT {
			t.Fatalf("same id, other body = %v, want conflict", err)
		}
		// A part never moves alone.
		if _, err := svc.Execute(ctx, "slot", capacity.Confirm{ReservationID: "order-1"}); capacity.ErrorCode(err) != capacity.ECONFLICT {
			t.Fatalf("confirming one part = %v, want conflict", err)
		}
		known, ok := svc.KnownBooking("order-1")
		if !ok || !capacity.SameItems(known, items("slot", 1, "pick", 3)) {
			t.Fatalf("known booking = %v, %v", known, ok)
		}
		view, err := svc.Pool(ctx, "pick")
		if err != nil || view.Held != 3 {
			t.Fatalf("pick = %+v, %v", view, err)
		}

		got, err := svc.Booking(ctx, "order-1", known)
		if err != nil || got.Status != capacity.StatusHeld || got.Written {
			t.Fatalf("read = %+v, %v", got, err)
		}
		ext, err := svc.ExtendBooking(ctx, "order-1", 2*time.Hour, known)
		if err != nil || !ext.ExpiresAt.Equal(epoch.Add(2*time.Hour)) {
			t.Fatalf("extend = %+v, %v", ext, err)
		}
		conf, err := svc.ConfirmBooking(ctx, "order-1", known)
		if err != nil || conf.Status != capacity.StatusConfirmed || !conf.Written {
			t.Fatalf("confirm = %+v, %v", conf, err)
		}
		if conf, err := svc.ConfirmBooking(ctx, "order-1", known); err != nil || conf.Written {
			t.Fatalf("confirm again = %+v, %v", conf, err)
		}
		rel, err := svc.ReleaseBooking(ctx, "order-1", known)
		if err != nil || rel.Status != capacity.StatusReleased {
			t.Fatalf("release = %+v, %v", rel, err)
		}
		if rel, err := svc.ReleaseBooking(ctx, "order-1", known); err != nil || rel.Written || rel.Status != capacity.StatusReleased {
			t.Fatalf("release again = %+v, %v", rel, err)
		}
		// Every move was one commit per pool, stored together.
		for _, p := range []string{"slot", "pick"} {
			var types []string
			for _, e := range store.events(p)[1:] {
				types = append(types, e.EventType())
			}
			if len(types) != 4 {
				t.Fatalf("%s: events %v", p, types)
			}
		}
		if got := store.lastSeq("slot") + 1; got != store.lastSeq("pick") && got != store.lastSeq("pick")+2 {
			t.Logf("slot at %d, pick at %d", store.lastSeq("slot"), store.lastSeq("pick"))
		}
		if _, err := svc.ConfirmBooking(ctx, "nope", items("slot", 1, "pick", 1)); capacity.ErrorCode(err) != capacity.ENOTFOUND {
			t.Fatalf("confirm unknown booking = %v", err)
		}
	})
}

// A booking's holds expire together: the sweeper leaves them, the booking
// expiry writes Expired in every pool in one unit.
func TestBookingExpiresInAllPoolsAtOnce(t *testing.T) {
	withAndWithoutCommitter(t, func(t *testing.T, opts pools.Options) {
		store := newMemStore()
		clk := poolstest.NewClock(epoch)
		opts.Now = clk.Now
		svc := pools.New(store, noSnapshots{}, opts)
		defer svc.Close()
		define(t, svc, "slot", 10, epoch)
		define(t, svc, "pick", 10, epoch)
		if _, err := svc.Book(context.Background(), capacity.Book{BookingID: "b1", Items: items("slot", 1, "pick", 2), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Minute)
		batches := len(store.batchSizes())
		if _, err := svc.Execute(context.Background(), "pick", capacity.Expire{}); err != nil {
			t.Fatal(err)
		}
		natstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			for _, p := range []string{"slot", "pick"} {
				evs := store.events(p)
				if _, ok := evs[len(evs)-1].(capacity.Expired); !ok {
					return fmt.Errorf("%s: last event %#v", p, evs[len(evs)-1])
				}
			}
			return nil
		})
		if store.lastSeq("slot") == store.lastSeq("pick") || len(store.batchSizes()) != batches+1 {
			t.Fatalf("expiry not one batch: %v", store.batchSizes())
		}
		if _, err := svc.ConfirmBooking(context.Background(), "b1", items("slot", 1, "pick", 2)); capacity.ErrorCode(err) != capacity.EEXPIRED {
			t.Fatalf("confirm a lapsed booking = %v", err)
		}
	})
}

// A confirm that finds a booking lapsed with no Expired on record writes
// its expiry, in every pool, in one batch, and is refused as expired.
func TestRefusedConfirmExpiresBookingInAllPoolsAtOnce(t *testing.T) {
	withAndWithoutCommitter(t, func(t *testing.T, opts pools.Options) {
		store := newMemStore()
		clk := poolstest.NewClock(epoch)
		opts.Now = clk.Now
		opts.SweepGrace = time.Hour
		svc := pools.New(store, noSnapshots{}, opts)
		defer svc.Close()
		define(t, svc, "slot", 10, epoch)
		define(t, svc, "pick", 10, epoch)
		its := items("slot", 1, "pick", 2)
		if _, err := svc.Book(context.Background(), capacity.Book{BookingID: "b1", Items: its, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Minute)
		batches := len(store.batchSizes())
		if _, err := svc.ConfirmBooking(context.Background(), "b1", its); capacity.ErrorCode(err) != capacity.EEXPIRED {
			t.Fatalf("confirm a lapsed booking = %v", err)
		}
		for _, p := range []string{"slot", "pick"} {
			evs := store.events(p)
			if _, ok := evs[len(evs)-1].(capacity.Expired); !ok {
				t.Fatalf("%s: last event %#v", p, evs[len(evs)-1])
			}
		}
		if len(store.batchSizes()) != batches+1 {
			t.Fatalf("expiry not one batch: %v", store.batchSizes())
		}
	})
}

// Bookings over overlapping pools, raced from many goroutines with plain
// holds beside them, never deadlock and never overbook, and every booking
// is in all its pools or none.
func TestConcurrentBookingsNeverDeadlockNorOverbook(t *testing.T) {
	withAndWithoutCommitter(t, func(t *testing.T, opts pools.Options) {
		store := newMemStore()
		opts.RequestTimeout = time.Minute
		svc := pools.New(store, noSnapshots{}, opts)
		defer svc.Close()
		poolIDs := []string{"p0", "p1", "p2", "p3", "p4", "p5"}
		const capacityUnits = 25
		for _, p := range poolIDs {
			define(t, svc, p, capacityUnits, epoch)
		}
		var ok atomic.Int64
		var mu sync.Mutex
		booked := map[string][]capacity.BookingItem{}
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				for i := range 40 {
					if w%4 == 0 {
						id := fmt.Sprintf("h%d-%d", w, i)
						_, err := svc.Execute(context.Background(), poolIDs[rng.IntN(len(poolIDs))], capacity.Hold{ReservationID: id, Quantity: 1, TTL: time.Hour})
						if err != nil && capacity.ErrorCode(err) != capacity.EINSUFFICIENT {
							t.Errorf("hold: %v", err)
						}
						continue
					}
					perm := rng.Perm(len(poolIDs))
					its := items(poolIDs[perm[0]], 1, poolIDs[perm[1]], 1+rng.IntN(2))
					if rng.IntN(3) == 0 {
						its = append(its, capacity.BookingItem{Pool: poolIDs[perm[2]], Quantity: 1})
					}
					id := fmt.Sprintf("b%d-%d", w, i)
					_, err := svc.Book(context.Background(), book(id, its))
					switch capacity.ErrorCode(err) {
					case "":
						ok.Add(1)
						mu.Lock()
						booked[id] = its
						mu.Unlock()
						if rng.IntN(4) == 0 {
							if _, err := svc.ReleaseBooking(context.Background(), id, its); err != nil {
								t.Errorf("release %s: %v", id, err)
							}
						}
					case capacity.EINSUFFICIENT:
					default:
						t.Errorf("book %s: %v", id, err)
					}
				}
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("bookings still running after 60 s: deadlock")
		}
		if ok.Load() == 0 {
			t.Fatal("no booking succeeded")
		}
		// Replay every pool: never over capacity at any point, and each
		// booking is in all its pools or none.
		inPools := map[string]map[string]bool{}
		for _, p := range poolIDs {
			pool := &capacity.Pool{}
			for i, e := range store.events(p) {
				pool.Evolve(e, uint64(i+1))
				if f := pool.FiguresAt(epoch); f.OverCapacity {
					t.Fatalf("%s overbooked after %#v: %+v", p, e, f)
				}
				if h, ok := e.(capacity.Held); ok && h.Booking != "" {
					if inPools[h.Booking] == nil {
						inPools[h.Booking] = map[string]bool{}
					}
					inPools[h.Booking][p] = true
				}
			}
		}
		for id, its := range booked {
			for _, it := range its {
				if !inPools[id][it.Pool] {
					t.Fatalf("acknowledged booking %s missing from %s", id, it.Pool)
				}
			}
		}
		for id, ps := range inPools {
			if its, ok := booked[id]; !ok || len(its) != len(ps) {
				t.Fatalf("booking %s in pools %v, acknowledged %v", id, ps, its)
			}
		}
		t.Logf("%d bookings, %d appends, batches %d", ok.Load(), store.commitCount(), len(store.batchSizes()))
	})
}

// Another writer moving a pool between the decision and the append makes
// the booking decide again on the new state, and succeed.
func TestStalePoolMidBookingRetries(t *testing.T) {
	withAndWithoutCommitter(t, func(t *testing.T, opts pools.Options) {
		store := newMemStore()
		svc := pools.New(store, noSnapshots{}, opts)
		defer svc.Close()
		define(t, svc, "a", 10, epoch)
		define(t, svc, "b", 10, epoch)
		var once sync.Once
		store.setHook(func(ctx context.Context, pool string, expectedSeq uint64, events []capacity.Event) error {
			if h, ok := events[0].(capacity.Held); ok && h.Booking != "" && pool == "b" {
				once.Do(func() {
					// Another instance holds in b first.
					if _, err := store.write("b", expectedSeq, []capacity.Event{capacity.Held{ReservationID: "other", Quantity: 9, TTL: time.Hour, ExpiresAt: epoch.Add(time.Hour), At: epoch}}); err != nil {
						t.Errorf("foreign write: %v", err)
					}
				})
			}
			return nil
		})
		bk, err := svc.Book(context.Background(), book("bk", items("a", 1, "b", 1)))
		if err != nil {
			t.Fatalf("Book after a stale pool = %v", err)
		}
		if got := svc.Stats().Conflicts; got == 0 {
			t.Fatal("no conflict counted")
		}
		if got := bookingWritten(store, "bk", "a", "b"); !got["a"] || !got["b"] {
			t.Fatalf("booking written in %v", got)
		}
		// Decided again on the moved state: b is now full.
		_, err = svc.Book(context.Background(), book("bk2", items("a", 1, "b", 1)))
		if capacity.ErrorCode(err) != capacity.EINSUFFICIENT || capacity.ErrorPool(err) != "b" {
			t.Fatalf("Book on the moved pool = %v (booked %+v)", err, bk)
		}
	})
}

// Close while a booking's append is in flight: it finishes, the caller gets
// the real outcome, and Close waits for it.
func TestCloseDuringBookingAppend(t *testing.T) {
	withAndWithoutCommitter(t, func(t *testing.T, opts pools.Options) {
		store := newMemStore()
		svc := pools.New(store, noSnapshots{}, opts)
		define(t, svc, "a", 10, epoch)
		define(t, svc, "b", 10, epoch)
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		store.setHook(func(ctx context.Context, pool string, _ uint64, events []capacity.Event) error {
			if h, ok := events[0].(capacity.Held); ok && h.Booking != "" {
				once.Do(func() { close(entered) })
				<-release
			}
			return nil
		})
		done := make(chan error, 1)
		go func() {
			_, err := svc.Book(context.Background(), book("bk", items("a", 1, "b", 1)))
			done <- err
		}()
		<-entered
		closed := make(chan struct{})
		go func() { svc.Close(); close(closed) }()
		select {
		case <-closed:
			t.Fatal("Close returned while a booking's append was in flight")
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("booking in flight at Close = %v, want stored", err)
		}
		<-closed
		if got := bookingWritten(store, "bk", "a", "b"); !got["a"] || !got["b"] {
			t.Fatalf("booking written in %v", got)
		}
	})
}

// Callers racing Close with bookings over overlapping pools are all
// answered, none stranded, and a booking refused at shutdown is in no pool.
func TestCloseDuringBookingsStrandsNoCaller(t *testing.T) {
	for round := range 30 {
		store := newMemStore()
		svc := pools.New(store, noSnapshots{}, pools.Options{
			Now: func() time.Time { return epoch }, RequestTimeout: time.Hour,
			BatchAcrossPools: round%2 == 1, MinBatchCommits: 1,
		})
		poolIDs := []string{"a", "b", "c", "d"}
		for _, p := range poolIDs {
			define(t, svc, p, 1_000_000, epoch)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		refused := map[string]bool{}
		for w := range 16 {
			wg.Go(func() {
				for i := 0; ; i++ {
					id := fmt.Sprintf("b%d-%d", w, i)
					_, err := svc.Book(context.Background(), book(id, items(poolIDs[(w+i)%4], 1, poolIDs[(w+i+1+w%3)%4], 1)))
					if err != nil {
						if capacity.ErrorCode(err) != capacity.EUNAVAILABLE {
							t.Errorf("book %s: %v", id, err)
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
		closed := make(chan struct{})
		go func() { svc.Close(); close(closed) }()
		waited := make(chan struct{})
		go func() { wg.Wait(); <-closed; close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: callers or Close still waiting 10 s after Close", round)
		}
		for _, p := range poolIDs {
			for _, e := range store.events(p) {
				if id := capacity.ReservationID(e); refused[id] {
					t.Fatalf("round %d: %s was refused at shutdown but is stored in %s", round, id, p)
				}
			}
		}
	}
}

// Two real instances over one NATS book overlapping pools: no overbooking,
// every booking in all its pools or none, and the OCC path is exercised.
func TestTwoInstancesBookOverlappingPools(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	a := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now})
	b := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, BatchAcrossPools: true, MinBatchCommits: 1})
	poolIDs := []string{"slot-1", "slot-2", "pick-1"}
	for _, p := range poolIDs {
		define(t, a.Service, p, 40, clk.Now())
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	booked := map[string]bool{}
	for w := range 16 {
		wg.Go(func() {
			svc := []*pools.Service{a.Service, b.Service}[w%2]
			for i := range 15 {
				id := fmt.Sprintf("b%d-%d", w, i)
				_, err := svc.Book(context.Background(), book(id, items(poolIDs[(w+i)%2], 1, "pick-1", 1)))
				switch capacity.ErrorCode(err) {
				case "":
					mu.Lock()
					booked[id] = true
					mu.Unlock()
				case capacity.EINSUFFICIENT:
				default:
					t.Errorf("book %s: %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	if got, want := len(booked), 40; got != want {
		t.Fatalf("bookings = %d, want %d (pick-1 holds 40)", got, want)
	}
	inStream := map[string]int{}
	for _, p := range poolIDs {
		for id := range heldInStream(t, a.Events, p) {
			inStream[id]++
		}
	}
	for id := range booked {
		if inStream[id] != 2 {
			t.Fatalf("booking %s in %d pools", id, inStream[id])
		}
	}
	if len(inStream) != len(booked) {
		t.Fatalf("%d bookings in the stream, %d acknowledged", len(inStream), len(booked))
	}
	t.Logf("conflicts retried: a=%d b=%d", a.Service.Stats().Conflicts, b.Service.Stats().Conflicts)
}
