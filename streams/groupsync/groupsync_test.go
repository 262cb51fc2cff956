package groupsync_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/groupsync"
	"github.com/capacityd/capacityd/streams/natstest"
)

// storeOf starts an embedded server (lazy fsync, or SyncAlways when strict)
// and returns a store over region "gs" whose appends wait for a groupsync
// round unless strict, with the Set to inspect.
func storeOf(tb testing.TB, strict bool, opts ...func(*server.Options)) (*streams.Store, *groupsync.Set, *server.Server) {
	tb.Helper()
	if strict {
		opts = append(opts, natstest.SyncAlways)
	}
	srv := natstest.RunServer(tb, opts...)
	_, js := natstest.Connect(tb, srv)
	var set *groupsync.Set
	var sopts []streams.Option
	if !strict {
		set = groupsync.NewSet(srv.JetStreamConfig().StoreDir, server.DEFAULT_GLOBAL_ACCOUNT)
		tb.Cleanup(set.Stop)
		sopts = append(sopts, streams.WithSync(set.Wait))
	}
	store, err := streams.New(context.Background(), js, "gs", sopts...)
	if err != nil {
		tb.Fatal(err)
	}
	return store, set, srv
}

func event(id string) []streams.Event {
	return []streams.Event{{Type: "pool.held", Version: 1, ID: id, Data: []byte(`{"units":1}`)}}
}

// TestAppendsShareRounds: concurrent appends each wait for a round, and
// rounds are shared (fewer rounds than appends), over the real server's
// files, across a block rollover.
func TestAppendsShareRounds(t *testing.T) {
	store, set, _ := storeOf(t, false)
	var observed atomic.Int64
	set.OnRound(func(d time.Duration) {
		if d > 0 {
			observed.Add(1)
		}
	})
	ctx := context.Background()
	const writers, each = 32, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			pool := fmt.Sprintf("p-%d", w)
			var last uint64
			for i := range each {
				seq, err := store.Append(ctx, pool, last, event(fmt.Sprintf("%s-%d", pool, i)))
				if err != nil {
					t.Error(err)
					return
				}
				last = seq
			}
		})
	}
	wg.Wait()
	rounds := set.Rounds()
	if rounds == 0 || rounds >= writers*each {
		t.Fatalf("%d rounds for %d appends: want at least one and fewer than the appends", rounds, writers*each)
	}
	if got := uint64(observed.Load()); got != rounds {
		t.Fatalf("OnRound told of %d rounds, %d ran", got, rounds)
	}
	t.Logf("%d appends, %d fsync rounds", writers*each, rounds)
}

// TestRoundStartsAfterWait: a round already running when Wait is called
// does not answer it; the next one does.
func TestRoundStartsAfterWait(t *testing.T) {
	dir := t.TempDir()
	msgs := filepath.Join(dir, "msgs")
	if err := os.MkdirAll(msgs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(msgs, "1.blk"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := groupsync.New(dir)
	defer s.Stop()
	ctx := context.Background()
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	before := s.Rounds()
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Rounds(); got <= before {
		t.Fatalf("rounds %d after a second Wait, was %d: a Wait must get a round of its own", got, before)
	}
}

// TestNewBlockAndRecreatedStream: the Syncer follows the server to a new
// block file and to a stream made again from 1.blk; a directory with no
// blocks is an error, not a silent success.
func TestNewBlockAndRecreatedStream(t *testing.T) {
	dir := t.TempDir()
	msgs := filepath.Join(dir, "msgs")
	s := groupsync.New(dir)
	defer s.Stop()
	ctx := context.Background()
	if err := s.Wait(ctx); err == nil {
		t.Fatal("Wait over a missing stream directory succeeded")
	}
	if err := os.MkdirAll(msgs, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(msgs, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1.blk")
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	write("2.blk")
	write("3.blk")
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// The stream is deleted and made again.
	if err := os.RemoveAll(msgs); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx); err == nil {
		t.Fatal("Wait with the stream's files gone succeeded")
	}
	if err := os.MkdirAll(msgs, 0o755); err != nil {
		t.Fatal(err)
	}
	write("1.blk")
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStopAnswersWaiters: Stop leaves nobody waiting.
func TestStopAnswersWaiters(t *testing.T) {
	s := groupsync.New(t.TempDir()) // no files: rounds fail, but they answer
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, groupsync.ErrStopped) {
		t.Fatalf("Wait after Stop: %v, want ErrStopped", err)
	}
}

// TestAppendsSurviveRestart: appends acknowledged under group sync are
// there after the server restarts on the same directory.
func TestAppendsSurviveRestart(t *testing.T) {
	store, set, srv := storeOf(t, false)
	ctx := context.Background()
	var last uint64
	for i := range 50 {
		seq, err := store.Append(ctx, "p", last, event(fmt.Sprintf("e-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	set.Stop()
	srv = natstest.Restart(t, srv)
	_, js := natstest.Connect(t, srv)
	again, err := streams.New(ctx, js, "gs")
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.LastSeq(ctx, "p")
	if err != nil || got != last {
		t.Fatalf("last sequence after restart %d (%v), want %d", got, err, last)
	}
}

// BenchmarkDurableAppends compares the two ways to fsync before the ack
// with 64 writers on 1,000 pools, as the service's many-pools load: the
// server syncing each message (strict) and groupsync rounds (group).
// Compare appends/s of the two in one run: go test -run x -bench DurableAppends ./streams/groupsync/
func BenchmarkDurableAppends(b *testing.B) {
	for _, mode := range []string{"strict", "group"} {
		b.Run("sync="+mode, func(b *testing.B) {
			store, set, _ := storeOf(b, mode == "strict")
			ctx := context.Background()
			const writers, pools = 64, 1000
			var mu sync.Mutex
			last := make([]uint64, pools)
			locks := make([]sync.Mutex, pools)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := w; i < b.N; i += writers {
						p := (i * 7919) % pools
						locks[p].Lock()
						mu.Lock()
						exp := last[p]
						mu.Unlock()
						seq, err := store.Append(ctx, fmt.Sprintf("p-%d", p), exp, event(fmt.Sprintf("%s-%d", mode, i)))
						if err != nil {
							locks[p].Unlock()
							b.Error(err)
							return
						}
						mu.Lock()
						last[p] = seq
						mu.Unlock()
						locks[p].Unlock()
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
			if set != nil {
				b.ReportMetric(float64(b.N)/float64(max(set.Rounds(), 1)), "appends/fsync")
			}
		})
	}
}
