package pools_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/pools/poolstest"
	"github.com/capacityd/capacityd/e2e/stacktest"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
)

const region = "test"

// epoch is where the tests' clocks start.
var epoch = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func define(t testing.TB, svc *pools.Service, pool string, capacityUnits int, now time.Time) {
	t.Helper()
	_, err := svc.Execute(context.Background(), pool, capacity.DefinePool{
		Pool: pool, Region: "north", Kind: "delivery",
		StartsAt: now.Add(24 * time.Hour), EndsAt: now.Add(25 * time.Hour), Capacity: capacityUnits,
	})
	if err != nil {
		t.Fatalf("define %s: %v", pool, err)
	}
}

// heldInStream counts the pool's Held events and checks they are unique.
func heldInStream(t testing.TB, events *streams.PoolEvents, pool string) map[string]int {
	t.Helper()
	held := make(map[string]int)
	for rec, err := range events.Read(context.Background(), pool, 0) {
		if err != nil {
			t.Fatalf("read %s: %v", pool, err)
		}
		if h, ok := rec.Event.(capacity.Held); ok {
			if _, dup := held[h.ReservationID]; dup {
				t.Fatalf("reservation %s held twice in the stream", h.ReservationID)
			}
			held[h.ReservationID] = h.Quantity
		}
	}
	return held
}

// raceHolds runs holds of quantity 1 with unique ids from goroutines workers
// spread over services, and returns the ids that were acknowledged.
func raceHolds(t testing.TB, svcs []*pools.Service, pool string, workers, holds int) (ok map[string]bool, rejected int) {
	t.Helper()
	var mu sync.Mutex
	ok = make(map[string]bool)
	var next, rej atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			svc := svcs[w%len(svcs)]
			for {
				n := next.Add(1)
				if n > int64(holds) {
					return
				}
				id := fmt.Sprintf("r%d", n)
				res, err := svc.Execute(context.Background(), pool, capacity.Hold{ReservationID: id, Quantity: 1, TTL: time.Hour})
				switch capacity.ErrorCode(err) {
				case "":
					if res.Reservation == nil || res.Reservation.ID != id || !res.Written {
						t.Errorf("hold %s: result %+v", id, res)
					}
					mu.Lock()
					ok[id] = true
					mu.Unlock()
				case capacity.EINSUFFICIENT:
					rej.Add(1)
				default:
					t.Errorf("hold %s: %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	return ok, int(rej.Load())
}

func TestRaceForTheLastUnits(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	st := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now})
	define(t, st.Service, "slot-18", 500, clk.Now())

	ok, rejected := raceHolds(t, []*pools.Service{st.Service}, "slot-18", 200, 2000)
	if got, want := len(ok), 500; got != want {
		t.Fatalf("successful holds = %d, want %d", got, want)
	}
	if got, want := rejected, 1500; got != want {
		t.Fatalf("rejected holds = %d, want %d", got, want)
	}
	view, err := st.Service.Pool(context.Background(), "slot-18")
	if err != nil {
		t.Fatal(err)
	}
	if view.Held != 500 || view.Available != 0 {
		t.Fatalf("pool held=%d available=%d, want 500 and 0", view.Held, view.Available)
	}
	inStream := heldInStream(t, st.Events, "slot-18")
	if got, want := len(inStream), 500; got != want {
		t.Fatalf("Held events in stream = %d, want %d", got, want)
	}
	for id := range ok {
		if _, found := inStream[id]; !found {
			t.Fatalf("acknowledged hold %s missing from the stream", id)
		}
	}
	if stats := st.Service.Stats(); stats.Appends >= 2001 {
		t.Logf("no batching happened: %+v", stats)
	} else {
		t.Logf("2001 commands in %d appends", stats.Appends)
	}
}

func TestTwoInstancesNeverOverbook(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	a := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, MaxAttempts: 1000})
	b := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, MaxAttempts: 1000})
	define(t, a.Service, "van-7", 300, clk.Now())

	ok, rejected := raceHolds(t, []*pools.Service{a.Service, b.Service}, "van-7", 64, 1000)
	if got, want := len(ok), 300; got != want {
		t.Fatalf("successful holds = %d, want %d (rejected %d)", got, want, rejected)
	}
	inStream := heldInStream(t, a.Events, "van-7")
	if got, want := len(inStream), 300; got != want {
		t.Fatalf("Held events in stream = %d, want %d", got, want)
	}
	for id := range ok {
		if _, found := inStream[id]; !found {
			t.Fatalf("acknowledged hold %s missing from the stream", id)
		}
	}
	conflicts := a.Service.Stats().Conflicts + b.Service.Stats().Conflicts
	if conflicts == 0 {
		t.Fatalf("two instances racing on one pool saw no conflicts: the OCC path was not exercised")
	}
	t.Logf("conflicts retried: a=%d b=%d", a.Service.Stats().Conflicts, b.Service.Stats().Conflicts)
	// Each instance sees the other's writes on a read.
	for _, st := range []*stacktest.Stack{a, b} {
		view, err := st.Service.Pool(context.Background(), "van-7")
		if err != nil {
			t.Fatal(err)
		}
		if view.Held != 300 {
			t.Fatalf("instance sees held=%d, want 300", view.Held)
		}
	}
}

func TestRestartKeepsEveryAcknowledgedHold(t *testing.T) {
	s := natstest.RunServer(t, natstest.SyncAlways)
	clk := poolstest.NewClock(epoch)
	st := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, SnapshotEvery: 50})
	define(t, st.Service, "pick-1", 1000, clk.Now())
	ok, _ := raceHolds(t, []*pools.Service{st.Service}, "pick-1", 16, 400)
	if _, err := st.Service.Execute(context.Background(), "pick-1", capacity.Confirm{ReservationID: "r7"}); err != nil && ok["r7"] {
		t.Fatal(err)
	}
	before, err := st.Service.Pool(context.Background(), "pick-1")
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st.Service.Stats().Snapshots == 0 {
			return errors.New("no snapshot written yet")
		}
		return nil
	})
	st.Service.Close()

	s = natstest.Restart(t, s)
	check := func(st *stacktest.Stack) {
		t.Helper()
		after, err := st.Service.Pool(context.Background(), "pick-1")
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("after restart pool = %+v, want %+v", after, before)
		}
		for id := range ok {
			r, err := st.Service.Reservation(context.Background(), "pick-1", id)
			if err != nil {
				t.Fatalf("acknowledged hold %s after restart: %v", id, err)
			}
			if r.Quantity != 1 {
				t.Fatalf("hold %s quantity %d", id, r.Quantity)
			}
		}
	}
	restarted := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now})
	check(restarted)
	if st := restarted.Service.Stats(); st.Replays != 0 {
		t.Fatalf("load after restart replayed the full history (%+v); want snapshot + tail", st)
	}
	restarted.Service.Close()

	// Snapshots are an optimisation: without the bucket the same state comes back.
	if err := restarted.JS.DeleteKeyValue(context.Background(), kv.DefaultBucket); err != nil {
		t.Fatal(err)
	}
	replayed := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now})
	check(replayed)
	if st := replayed.Service.Stats(); st.Replays == 0 {
		t.Fatalf("no full replay recorded without snapshots: %+v", st)
	}
}

// A hold frees its units at its deadline, before any sweeper; the decision
// that relies on the lapse records it.
func TestExpiredHoldFreesCapacityWithoutSweeper(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	st := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, SweepGrace: time.Hour})
	ctx := context.Background()
	define(t, st.Service, "slot-9", 1, clk.Now())
	if _, err := st.Service.Execute(ctx, "slot-9", capacity.Hold{ReservationID: "a", Quantity: 1, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	_, err := st.Service.Execute(ctx, "slot-9", capacity.Hold{ReservationID: "b", Quantity: 1, TTL: time.Minute})
	if got, want := capacity.ErrorCode(err), capacity.EINSUFFICIENT; got != want {
		t.Fatalf("second hold: code %q, want %q", got, want)
	}
	clk.Advance(time.Minute)
	if _, err := st.Service.Execute(ctx, "slot-9", capacity.Hold{ReservationID: "b", Quantity: 1, TTL: time.Minute}); err != nil {
		t.Fatalf("hold after the first lapsed: %v", err)
	}
	// The lapse b's hold relied on is on record in b's own commit, not
	// later by the sweeper (its grace is an hour).
	commitOf := map[string]uint64{}
	for rec, err := range st.Events.Read(ctx, "slot-9", 0) {
		if err != nil {
			t.Fatal(err)
		}
		switch e := rec.Event.(type) {
		case capacity.Expired:
			commitOf["expired "+e.ReservationID] = rec.Seq
		case capacity.Held:
			commitOf["held "+e.ReservationID] = rec.Seq
		}
	}
	if x, ok := commitOf["expired a"]; !ok || x != commitOf["held b"] {
		t.Fatalf("commits %v: want a's Expired in the commit of b's Held", commitOf)
	}
	r, err := st.Service.Reservation(ctx, "slot-9", "a")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != capacity.StatusExpired {
		t.Fatalf("lapsed hold reads as %s, want expired", r.Status)
	}
	_, err = st.Service.Execute(ctx, "slot-9", capacity.Confirm{ReservationID: "a"})
	if got, want := capacity.ErrorCode(err), capacity.EEXPIRED; got != want {
		t.Fatalf("confirm lapsed hold: code %q, want %q", got, want)
	}
}

func TestSweeperWritesExpired(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	st := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, SweepGrace: time.Millisecond})
	ctx := context.Background()
	define(t, st.Service, "slot-10", 5, clk.Now())
	for _, id := range []string{"a", "b"} {
		if _, err := st.Service.Execute(ctx, "slot-10", capacity.Hold{ReservationID: id, Quantity: 2, TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Service.Execute(ctx, "slot-10", capacity.Confirm{ReservationID: "b"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	// Any command re-arms the sweep timer against the advanced clock.
	if _, err := st.Service.Pool(ctx, "slot-10"); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		var expired []string
		for rec, err := range st.Events.Read(ctx, "slot-10", 0) {
			if err != nil {
				return err
			}
			if e, ok := rec.Event.(capacity.Expired); ok {
				expired = append(expired, e.ReservationID)
			}
		}
		if len(expired) != 1 || expired[0] != "a" {
			return fmt.Errorf("expired events for %v, want [a]", expired)
		}
		return nil
	})
}

func TestCorruptSnapshotFallsBackToReplay(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	st := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, SnapshotEvery: 1})
	ctx := context.Background()
	define(t, st.Service, "slot-c", 10, clk.Now())
	for i := range 3 {
		if _, err := st.Service.Execute(ctx, "slot-c", capacity.Hold{ReservationID: fmt.Sprint("h", i), Quantity: 2, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := st.Service.Pool(ctx, "slot-c")
	if err != nil {
		t.Fatal(err)
	}
	st.Service.Close()
	bucket, err := st.JS.KeyValue(ctx, kv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Put(ctx, st.Snapshots.Key("slot-c"), []byte(`{"seq":999999,"state":{"id":"slot-c","capacity":1000000}}`)); err != nil {
		t.Fatal(err)
	}
	fresh := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now})
	got, err := fresh.Service.Pool(ctx, "slot-c")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("pool from a lying snapshot = %+v, want %+v", got, want)
	}
}

func TestIdlePoolsAreEvictedAndReload(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	st := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, IdleTimeout: 20 * time.Millisecond})
	ctx := context.Background()
	define(t, st.Service, "cold", 3, clk.Now())
	if _, err := st.Service.Execute(ctx, "cold", capacity.Hold{ReservationID: "x", Quantity: 1, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Service.Execute(ctx, "cold", capacity.Confirm{ReservationID: "x"}); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := st.Service.Loaded(); n != 0 {
			return fmt.Errorf("%d pools still loaded", n)
		}
		return nil
	})
	r, err := st.Service.Reservation(ctx, "cold", "x")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != capacity.StatusConfirmed {
		t.Fatalf("reloaded reservation status %s", r.Status)
	}
}

// TestPoolsWithLiveHoldsAreEvicted: a pool idle for IdleTimeout leaves
// memory even with live holds; a pool with a long tail since its last
// snapshot is snapshotted on the way out, so its reload reads the snapshot
// instead of replaying; the holds are still there after the reload, and
// a lapsed one still frees its units.
func TestPoolsWithLiveHoldsAreEvicted(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	st := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now, IdleTimeout: 20 * time.Millisecond})
	ctx := context.Background()
	define(t, st.Service, "warm", 200, clk.Now())
	for i := range 100 { // a tail past evictSnapshotAfter, below SnapshotEvery
		if _, err := st.Service.Execute(ctx, "warm", capacity.Hold{ReservationID: fmt.Sprint("h", i), Quantity: 1, TTL: time.Duration(i+1) * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	natstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := st.Service.Loaded(); n != 0 {
			return fmt.Errorf("%d pools still loaded", n)
		}
		if _, _, err := st.Snapshots.Get(ctx, "warm"); err != nil {
			return fmt.Errorf("no snapshot of the evicted pool yet: %v", err)
		}
		return nil
	})
	replays := st.Service.Stats().Replays
	clk.Advance(30*time.Minute + time.Second) // h0..h29 lapsed
	got, err := st.Service.Pool(ctx, "warm")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Service.Stats().Replays, replays; got != want {
		t.Fatalf("replays after reloading = %d, want %d (the eviction's snapshot)", got, want)
	}
	if got, want := got.Held, 70; got != want {
		t.Fatalf("held after reload past 30 deadlines = %d, want %d", got, want)
	}
	r, err := st.Service.Reservation(ctx, "warm", "h99")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != capacity.StatusHeld {
		t.Fatalf("reloaded h99 status %s, want held", r.Status)
	}
}

func TestCommandsOnUnknownPool(t *testing.T) {
	s := natstest.RunServer(t)
	st := stacktest.NewStack(t, s, region, pools.Options{})
	_, err := st.Service.Execute(context.Background(), "nope", capacity.Hold{ReservationID: "a", Quantity: 1, TTL: time.Minute})
	if got, want := capacity.ErrorCode(err), capacity.ENOTFOUND; got != want {
		t.Fatalf("hold on unknown pool: %q, want %q", got, want)
	}
	_, err = st.Service.Pool(context.Background(), "nope")
	if got, want := capacity.ErrorCode(err), capacity.ENOTFOUND; got != want {
		t.Fatalf("read unknown pool: %q, want %q", got, want)
	}
	if last, err := st.Events.LastSeq(context.Background(), "nope"); err != nil || last != 0 {
		t.Fatalf("unknown pool has history: %d, %v", last, err)
	}
}

func TestUnknownPoolsDoNotStayLoaded(t *testing.T) {
	s := natstest.RunServer(t)
	st := stacktest.NewStack(t, s, region, pools.Options{})
	for i := range 50 {
		if _, err := st.Service.Pool(context.Background(), fmt.Sprint("ghost-", i)); capacity.ErrorCode(err) != capacity.ENOTFOUND {
			t.Fatalf("read of unknown pool: %v", err)
		}
	}
	natstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := st.Service.Loaded(); n != 0 {
			return fmt.Errorf("%d unknown pools still loaded", n)
		}
		return nil
	})
}

// An instance that writes nothing for a batch (a refusal, a repeat, a read)
// must still answer from the pool as it is in the store, not as it last saw
// it: the other instance may have moved it on.
func TestAnswersWithoutWritesAreCurrent(t *testing.T) {
	s := natstest.RunServer(t)
	clk := poolstest.NewClock(epoch)
	a := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now})
	b := stacktest.NewStack(t, s, region, pools.Options{Now: clk.Now})
	ctx := context.Background()
	define(t, a.Service, "shared", 1, clk.Now())
	// b loads the pool while it is empty.
	if _, err := b.Service.Pool(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Service.Execute(ctx, "shared", capacity.Hold{ReservationID: "x", Quantity: 1, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// A confirm through b of a hold made through a.
	if _, err := b.Service.Execute(ctx, "shared", capacity.Confirm{ReservationID: "x"}); err != nil {
		t.Fatalf("confirm through the other instance: %v", err)
	}
	// b refuses a hold only if it truly does not fit: release through a, then hold through b.
	if _, err := a.Service.Execute(ctx, "shared", capacity.Release{ReservationID: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Service.Execute(ctx, "shared", capacity.Hold{ReservationID: "y", Quantity: 1, TTL: time.Hour}); err != nil {
		t.Fatalf("hold through the other instance after a release: %v", err)
	}
	// And a refusal by b reflects a's writes too.
	_, err := b.Service.Execute(ctx, "shared", capacity.Hold{ReservationID: "z", Quantity: 1, TTL: time.Hour})
	if got, want := capacity.ErrorCode(err), capacity.EINSUFFICIENT; got != want {
		t.Fatalf("hold on a full pool: %q, want %q", got, want)
	}
}
