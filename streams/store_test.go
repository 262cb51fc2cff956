package streams_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
)

// newStore starts a server and returns a Store for region "eu-west" on it.
func newStore(t testing.TB, opts ...streams.Option) (*streams.Store, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	store, err := streams.New(context.Background(), js, "eu-west", opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return store, js
}

// events returns n events with ids prefix-0 .. prefix-(n-1).
func events(prefix string, n int) []streams.Event {
	evs := make([]streams.Event, n)
	for i := range evs {
		evs[i] = streams.Event{
			Type:    "pool.held",
			Version: 1,
			ID:      fmt.Sprintf("%s-%d", prefix, i),
			Data:    fmt.Appendf(nil, `{"n":%d}`, i),
		}
	}
	return evs
}

// readAll collects Read's results, failing the test on error.
func readAll(t testing.TB, store *streams.Store, pool string, afterSeq uint64) []streams.Recorded {
	t.Helper()
	var recs []streams.Recorded
	for rec, err := range store.Read(context.Background(), pool, afterSeq) {
		if err != nil {
			t.Fatalf("Read(%s, %d): %v", pool, afterSeq, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func ids(recs []streams.Recorded) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func TestNewNamesAndConfig(t *testing.T) {
	store, js := newStore(t)
	ctx := context.Background()
	if got, want := store.StreamName(), "CAPACITY_EU_WEST"; got != want {
		t.Fatalf("StreamName = %q, want %q", got, want)
	}
	if got, want := store.Subject("p1"), "capacity.eu-west.p1"; got != want {
		t.Fatalf("Subject = %q, want %q", got, want)
	}
	stream, err := js.Stream(ctx, store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if cfg.MaxAge != 0 || !cfg.AllowAtomicPublish || cfg.Storage != jetstream.FileStorage ||
		!cfg.AllowDirect || cfg.Duplicates != 2*time.Minute || cfg.Replicas != 1 ||
		cfg.MaxMsgs > 0 || cfg.MaxBytes > 0 || cfg.MaxMsgsPerSubject > 0 || cfg.AllowMsgTTL ||
		!slices.Equal(cfg.Subjects, []string{"capacity.eu-west.>"}) {
		t.Fatalf("stream config = %+v", cfg)
	}

	// New on an existing stream with a removing limit puts the config back.
	cfg.MaxAge = time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.New(ctx, js, "eu-west"); err != nil {
		t.Fatalf("New on drifted stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 0 {
		t.Fatalf("MaxAge = %v after New, want 0", info.Config.MaxAge)
	}

	// Invalid arguments.
	for _, region := range []string{"", "eu.west", "eu west", string(make([]byte, 65))} {
		if _, err := streams.New(ctx, js, region); !errors.Is(err, streams.ErrInvalid) {
			t.Errorf("New(%q) = %v, want ErrInvalid", region, err)
		}
	}
	// A region that maps to the same stream name but other subjects is refused.
	if _, err := streams.New(ctx, js, "eu_west"); !errors.Is(err, streams.ErrInvalid) {
		t.Errorf("New(eu_west) = %v, want ErrInvalid", err)
	}
}

func TestAppendReadRoundTrip(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()

	ev := streams.Event{Type: "pool.created", Version: 2, ID: "a-0", Data: []byte(`{"cap":10}`),
		Header: map[string]string{"traceparent": "00-abc-def-01"}}
	seq, err := store.Append(ctx, "p1", 0, []streams.Event{ev})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if seq != 1 {
		t.Fatalf("seq = %d, want 1", seq)
	}
	recs := readAll(t, store, "p1", 0)
	if len(recs) != 1 {
		t.Fatalf("read %d events, want 1", len(recs))
	}
	r := recs[0]
	if r.Seq != 1 || r.Pool != "p1" || r.Type != ev.Type || r.Version != 2 || r.ID != ev.ID ||
		string(r.Data) != string(ev.Data) || r.Header["traceparent"] != "00-abc-def-01" || len(r.Header) != 1 ||
		time.Since(r.Time) > time.Minute {
		t.Fatalf("recorded = %+v", r)
	}
	if got := readAll(t, store, "p1", 1); len(got) != 0 {
		t.Fatalf("Read after last = %d events, want 0", len(got))
	}
	if got := readAll(t, store, "empty", 0); len(got) != 0 {
		t.Fatalf("Read of empty pool = %d events, want 0", len(got))
	}
}

func TestAppendConflictStoresNothing(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	if _, err := store.Append(ctx, "p1", 0, events("a", 1)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		expected uint64
		n        int
	}{
		{"single stale", 0, 1},
		{"single ahead", 5, 1},
		{"batch stale", 0, 3},
		{"batch ahead", 7, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.Append(ctx, "p1", tc.expected, events("b-"+tc.name, tc.n))
			if !errors.Is(err, streams.ErrConflict) {
				t.Fatalf("Append = %v, want ErrConflict", err)
			}
			last, err := store.StreamLastSeq(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if last != 1 {
				t.Fatalf("stream last seq = %d, want 1 (nothing stored)", last)
			}
		})
	}
}

func TestAppendBatchContiguous(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	// Interleave pools so batches land after other subjects' messages.
	var expected = map[string]uint64{}
	for round := range 5 {
		for _, pool := range []string{"p1", "p2", "p3"} {
			evs := events(fmt.Sprintf("%s-r%d", pool, round), 1+round*7)
			last, err := store.Append(ctx, pool, expected[pool], evs)
			if err != nil {
				t.Fatalf("Append(%s, %d): %v", pool, expected[pool], err)
			}
			recs := readAll(t, store, pool, expected[pool])
			if !slices.Equal(ids(recs), ids(toRecorded(evs))) {
				t.Fatalf("read ids %v, want %v", ids(recs), ids(toRecorded(evs)))
			}
			for i, r := range recs {
				if want := last - uint64(len(evs)) + 1 + uint64(i); r.Seq != want {
					t.Fatalf("event %d at seq %d, want %d (contiguous up to %d)", i, r.Seq, want, last)
				}
			}
			expected[pool] = last
		}
	}
	for pool, want := range expected {
		got, err := store.LastSeq(ctx, pool)
		if err != nil || got != want {
			t.Fatalf("LastSeq(%s) = %d, %v, want %d", pool, got, err, want)
		}
	}
	if got, err := store.LastSeq(ctx, "none"); err != nil || got != 0 {
		t.Fatalf("LastSeq(none) = %d, %v, want 0", got, err)
	}
	pools, err := store.Pools(ctx)
	if err != nil || !slices.Equal(pools, []string{"p1", "p2", "p3"}) {
		t.Fatalf("Pools = %v, %v", pools, err)
	}
}

func toRecorded(evs []streams.Event) []streams.Recorded {
	out := make([]streams.Recorded, len(evs))
	for i, e := range evs {
		out[i] = streams.Recorded{ID: e.ID}
	}
	return out
}

func TestAppendInvalid(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	dup := events("d", 2)
	dup[1].ID = dup[0].ID
	cases := []struct {
		name   string
		pool   string
		events []streams.Event
		want   error
	}{
		{"no events", "p", nil, streams.ErrInvalid},
		{"bad pool", "a.b", events("x", 1), streams.ErrInvalid},
		{"empty id", "p", []streams.Event{{Type: "t"}}, streams.ErrInvalid},
		{"empty type", "p", []streams.Event{{ID: "i"}}, streams.ErrInvalid},
		{"reserved header", "p", []streams.Event{{ID: "i", Type: "t", Header: map[string]string{"Nats-Rollup": "all"}}}, streams.ErrInvalid},
		{"newline in header", "p", []streams.Event{{ID: "i", Type: "t", Header: map[string]string{"x": "a\r\nb"}}}, streams.ErrInvalid},
		{"duplicate ids", "p", dup, streams.ErrInvalid},
		{"too large", "p", events("big", 1001), streams.ErrBatchTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := store.Append(ctx, tc.pool, 0, tc.events); !errors.Is(err, tc.want) {
				t.Fatalf("Append = %v, want %v", err, tc.want)
			}
		})
	}
	// The largest allowed batch goes through.
	last, err := store.Append(ctx, "p", 0, events("max", 1000))
	if err != nil || last != 1000 {
		t.Fatalf("Append of 1000 = %d, %v", last, err)
	}
}

// TestAppendRetry covers the contract for retries: an Append repeated with the same expectedSeq and event
// IDs after it succeeded reports success with the original sequence and stores nothing new, even when other
// appends came after it; an Append whose position after expectedSeq holds other events is a conflict.
func TestAppendRetry(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	for _, n := range []int{1, 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			pool := fmt.Sprintf("retry%d", n)
			evs := events(pool, n)
			first, err := store.Append(ctx, pool, 0, evs)
			if err != nil {
				t.Fatal(err)
			}
			again, err := store.Append(ctx, pool, 0, evs)
			if err != nil || again != first {
				t.Fatalf("retry = %d, %v, want %d, nil", again, err, first)
			}
			// Someone appends after us; our retry still resolves to our events.
			if _, err := store.Append(ctx, pool, first, events(pool+"-other", 2)); err != nil {
				t.Fatal(err)
			}
			again, err = store.Append(ctx, pool, 0, evs)
			if err != nil || again != first {
				t.Fatalf("late retry = %d, %v, want %d, nil", again, err, first)
			}
			if got := readAll(t, store, pool, 0); len(got) != n+2 {
				t.Fatalf("pool has %d events, want %d", len(got), n+2)
			}
			// New events with a stale expected seq conflict.
			if _, err := store.Append(ctx, pool, 0, events(pool+"-late", n)); !errors.Is(err, streams.ErrConflict) {
				t.Fatalf("stale append = %v, want ErrConflict", err)
			}
		})
	}
}

func TestLogAcrossPools(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	if _, err := store.Append(ctx, "a", 0, events("a", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "b", 0, events("b", 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "a", 2, events("a2", 1)); err != nil {
		t.Fatal(err)
	}
	var got []string
	var seqs []uint64
	for rec, err := range store.Log(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Pool+"/"+rec.ID)
		seqs = append(seqs, rec.Seq)
	}
	want := []string{"a/a-0", "a/a-1", "b/b-0", "b/b-1", "b/b-2", "a/a2-0"}
	if !slices.Equal(got, want) || !slices.Equal(seqs, []uint64{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("Log = %v %v, want %v", got, seqs, want)
	}
	var from4 []uint64
	for rec, err := range store.Log(ctx, 4) {
		if err != nil {
			t.Fatal(err)
		}
		from4 = append(from4, rec.Seq)
	}
	if !slices.Equal(from4, []uint64{4, 5, 6}) {
		t.Fatalf("Log(4) = %v", from4)
	}
	// Stopping early is fine.
	for range store.Log(ctx, 1) {
		break
	}
}

func TestRestartKeepsData(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	store, err := streams.New(ctx, js, "us")
	if err != nil {
		t.Fatal(err)
	}
	last, err := store.Append(ctx, "p", 0, events("x", 10))
	if err != nil {
		t.Fatal(err)
	}

	srv = natstest.Restart(t, srv)
	_, js = natstest.Connect(t, srv)
	store, err = streams.New(ctx, js, "us")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.LastSeq(ctx, "p"); err != nil || got != last {
		t.Fatalf("LastSeq after restart = %d, %v, want %d", got, err, last)
	}
	if got := readAll(t, store, "p", 0); len(got) != 10 {
		t.Fatalf("read %d events after restart, want 10", len(got))
	}
	if _, err := store.Append(ctx, "p", last, events("y", 2)); err != nil {
		t.Fatalf("append after restart: %v", err)
	}
}

// TestConcurrentAppenders runs 8 writers on one pool: every success extends the chain, the rest conflict.
func TestConcurrentAppenders(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	const writers, attempts = 8, 40
	var (
		mu        sync.Mutex
		successes = map[uint64]int{} // last seq -> events appended
		conflicts int
		wg        sync.WaitGroup
		errs      = make(chan error, writers)
	)
	for w := range writers {
		wg.Go(func() {
			for i := range attempts {
				expected, err := store.LastSeq(ctx, "hot")
				if err != nil {
					errs <- err
					return
				}
				n := 1 + (w+i)%3
				last, err := store.Append(ctx, "hot", expected, events(fmt.Sprintf("w%d-%d", w, i), n))
				mu.Lock()
				switch {
				case err == nil:
					if last != expected+uint64(n) {
						errs <- fmt.Errorf("appended %d after %d, got last %d", n, expected, last)
					}
					successes[last] = n
				case errors.Is(err, streams.ErrConflict):
					conflicts++
				default:
					errs <- err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for _, n := range successes {
		total += n
	}
	recs := readAll(t, store, "hot", 0)
	if len(recs) != total {
		t.Fatalf("history has %d events, successes appended %d", len(recs), total)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("event %d at seq %d: gap", i, r.Seq)
		}
	}
	t.Logf("%d successful appends (%d events), %d conflicts", len(successes), total, conflicts)
	if len(successes)+conflicts != writers*attempts {
		t.Fatalf("successes %d + conflicts %d != %d", len(successes), conflicts, writers*attempts)
	}
}

// TestReadManyEvents reads a long history of one pool past another pool's
// events. How fast is BenchmarkRead's business, not a test's.
func TestReadManyEvents(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	appendBig(t, store, ctx)
	recs := readAll(t, store, "big", 0)
	if len(recs) != 10000 {
		t.Fatalf("read %d, want 10000", len(recs))
	}
	for i, r := range recs {
		if r.Pool != "big" || (i > 0 && r.Seq != recs[i-1].Seq+1) {
			t.Fatalf("record %d: pool %s seq %d after %d", i, r.Pool, r.Seq, recs[max(0, i-1)].Seq)
		}
	}
	if got := readAll(t, store, "big", 9990); len(got) != 10 || got[0].Seq != 9991 {
		t.Fatalf("Read after 9990 = %d events", len(got))
	}
}

// appendBig appends 10,000 events to pool "big" in batches, then 10 to
// "other" so reads must filter.
func appendBig(t testing.TB, store *streams.Store, ctx context.Context) {
	t.Helper()
	var last uint64
	for i := range 10 {
		var err error
		last, err = store.Append(ctx, "big", last, events(fmt.Sprint("e", i), 1000))
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Append(ctx, "other", 0, events("o", 10)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRead replays a pool of 10,000 events, as loading one does.
//
//	go test -run x -bench Read ./streams/
func BenchmarkRead(b *testing.B) {
	store, _ := newStore(b)
	ctx := context.Background()
	appendBig(b, store, ctx)
	for b.Loop() {
		n := 0
		for _, err := range store.Read(ctx, "big", 0) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 10000 {
			b.Fatalf("read %d", n)
		}
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestAppendAfterTransportFailure drives the lookup that follows a failed request: a request cancelled
// before its answer is resolved by looking at what follows expectedSeq on the pool's subject.
func TestAppendAfterTransportFailure(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	done, cancel := context.WithCancel(ctx)
	cancel()

	ev := events("t", 1)
	_, err := store.Append(done, "p", 0, ev)
	if !errors.Is(err, streams.ErrUnknownOutcome) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with nothing stored = %v, want ErrUnknownOutcome wrapping context.Canceled", err)
	}
	seq, err := store.Append(ctx, "p", 0, ev)
	if err != nil {
		t.Fatal(err)
	}
	// Our event follows expectedSeq: the failed request counts as stored.
	if got, err := store.Append(done, "p", 0, ev); err != nil || got != seq {
		t.Fatalf("Append of stored event = %d, %v, want %d, nil", got, err, seq)
	}
	// Another event follows expectedSeq: a definite conflict.
	if _, err := store.Append(done, "p", 0, events("u", 1)); !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("Append after another event = %v, want ErrConflict", err)
	}
	// A batch is not started with a done context.
	if _, err := store.Append(done, "p", seq, events("v", 3)); !errors.Is(err, context.Canceled) || errors.Is(err, streams.ErrUnknownOutcome) {
		t.Fatalf("batch Append with done context = %v, want context.Canceled", err)
	}
}

// While no stream answers (a leader election; here the stream is gone for a
// while), a single-message append sends the same message again until a
// stream takes it, within its deadline: no wait for the whole timeout, and
// one copy stored.
func TestAppendResendsUntilAStreamAnswers(t *testing.T) {
	store, js := newStore(t, streams.WithAttemptTimeout(200*time.Millisecond))
	ctx := context.Background()
	cfg, err := js.Stream(ctx, store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	config := cfg.CachedInfo().Config
	if err := js.DeleteStream(ctx, store.StreamName()); err != nil {
		t.Fatal(err)
	}
	back := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // the "election"
		_, err := js.CreateStream(ctx, config)
		back <- err
	}()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	seq, err := store.Append(actx, "p", 0, events("r", 1))
	if err := <-back; err != nil {
		t.Fatal(err)
	}
	if err != nil || seq != 1 {
		t.Fatalf("Append across a stream's absence = %d, %v; want 1, nil", seq, err)
	}
	if got := readAll(t, store, "p", 0); len(got) != 1 {
		t.Fatalf("stored %d copies, want 1", len(got))
	}
	// With nobody answering until the deadline, nothing was stored: a
	// definite failure, not an unknown outcome.
	if err := js.DeleteStream(ctx, store.StreamName()); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if _, err := store.Append(short, "q", 0, events("s", 1)); err == nil || errors.Is(err, streams.ErrUnknownOutcome) {
		t.Fatalf("Append with no stream at all = %v, want a definite failure", err)
	}
}
