package streams_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats-server/v2/server"
)

// commits returns one commit per pool, each a single event with id prefix-pool.
func commits(prefix string, expected map[string]uint64, pools ...string) []streams.Commit {
	out := make([]streams.Commit, len(pools))
	for i, p := range pools {
		ev := events(prefix+"-"+p, 1)[0]
		out[i] = streams.Commit{Pool: p, ExpectedSeq: expected[p], Event: ev}
	}
	return out
}

// AppendAll stores one message per pool at contiguous sequences, each on
// its pool's subject, and a repeat of the same batch resolves to it.
func TestAppendAllStoresEveryPool(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	if _, err := store.Append(ctx, "b", 0, events("b-first", 1)); err != nil {
		t.Fatal(err)
	}
	batch := commits("one", map[string]uint64{"b": 1}, "a", "b", "c")
	seqs, err := store.AppendAll(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{2, 3, 4}; !slices.Equal(seqs, want) {
		t.Fatalf("seqs = %v, want %v", seqs, want)
	}
	for i, c := range batch {
		got := readAll(t, store, c.Pool, 0)
		if last := got[len(got)-1]; last.Seq != seqs[i] || last.ID != c.Event.ID {
			t.Fatalf("pool %s ends with %d/%s, want %d/%s", c.Pool, last.Seq, last.ID, seqs[i], c.Event.ID)
		}
	}
	again, err := store.AppendAll(ctx, batch)
	if err != nil || !slices.Equal(again, seqs) {
		t.Fatalf("repeat = %v, %v; want %v", again, err, seqs)
	}
	if last, _ := store.StreamLastSeq(ctx); last != 4 {
		t.Fatalf("stream last seq = %d after a repeat, want 4", last)
	}
}

// A batch with one stale pool stores nothing, and its error names exactly
// the pools that moved.
func TestAppendAllConflictNamesThePools(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	for _, p := range []string{"a", "b", "c", "d"} {
		if _, err := store.Append(ctx, p, 0, events(p+"-first", 1)); err != nil {
			t.Fatal(err)
		}
	}
	// Expected sequences as one writer saw them, before b and d moved on.
	expected := map[string]uint64{"a": 1, "b": 2, "c": 3, "d": 4}
	if _, err := store.Append(ctx, "b", 2, events("b-other", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "d", 4, events("d-other", 1)); err != nil {
		t.Fatal(err)
	}
	_, err := store.AppendAll(ctx, commits("mine", expected, "a", "b", "c", "d"))
	var conflict *streams.ConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("AppendAll with stale pools = %v, want a ConflictError", err)
	}
	if want := []string{"b", "d"}; !slices.Equal(conflict.Pools, want) {
		t.Fatalf("conflicting pools = %v, want %v", conflict.Pools, want)
	}
	if last, _ := store.StreamLastSeq(ctx); last != 6 {
		t.Fatalf("stream last seq = %d, want 6: nothing of the refused batch stored", last)
	}
	// The others go again on their own and succeed.
	if _, err := store.AppendAll(ctx, commits("mine", expected, "a", "c")); err != nil {
		t.Fatalf("retry without the stale pools: %v", err)
	}
}

func TestAppendAllInvalid(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	twice := commits("x", nil, "a", "b")
	twice[1].Pool = "a"
	sameID := commits("x", nil, "a", "b")
	sameID[1].Event.ID = sameID[0].Event.ID
	tooMany := make([]streams.Commit, 1001)
	for i := range tooMany {
		tooMany[i] = commits("big", nil, fmt.Sprintf("p%d", i))[0]
	}
	for name, c := range map[string][]streams.Commit{"none": nil, "pool twice": twice, "id twice": sameID} {
		if _, err := store.AppendAll(ctx, c); !errors.Is(err, streams.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := store.AppendAll(ctx, tooMany); !errors.Is(err, streams.ErrBatchTooLarge) {
		t.Errorf("1001 commits: %v, want ErrBatchTooLarge", err)
	}
}

// BenchmarkAppendAll measures one cross-pool atomic batch at a time, of n
// commits over distinct pools, against the same commits as lone publishes
// one after another: what a batch's fixed cost is, and from which size it
// pays, in each sync mode.
//
//	go test -run x -bench AppendAll -benchtime 2s ./streams/
func BenchmarkAppendAll(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts []func(*server.Options)
	}{
		{"sync=interval", nil},
		{"sync=always", []func(*server.Options){natstest.SyncAlways}},
	} {
		for _, n := range []int{1, 8, 32, 128} {
			b.Run(fmt.Sprintf("%s/commits=%d", mode.name, n), func(b *testing.B) {
				srv := natstest.RunServer(b, mode.opts...)
				_, js := natstest.Connect(b, srv)
				store, err := streams.New(context.Background(), js, "bench")
				if err != nil {
					b.Fatal(err)
				}
				expected := map[string]uint64{}
				pools := make([]string, n)
				for i := range pools {
					pools[i] = fmt.Sprintf("p%d", i)
				}
				b.ResetTimer()
				for i := range b.N {
					seqs, err := store.AppendAll(context.Background(), commits(fmt.Sprint("b", i), expected, pools...))
					if err != nil {
						b.Fatal(err)
					}
					for j, p := range pools {
						expected[p] = seqs[j]
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "commits/s")
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/batch")
			})
		}
	}
}
