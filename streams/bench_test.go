package streams_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
)

// BenchmarkAppend measures appends with an expected sequence on an in-process R1 file stream: sequential
// appends to one pool of 1 and 64 events, and 64-event batches from 8 pools in parallel (one goroutine
// each, as the entity layer does), with the default sync interval and with SyncAlways.
func BenchmarkAppend(b *testing.B) {
	syncModes := []struct {
		name string
		opts []func(*server.Options)
	}{
		{"sync=default", nil},
		{"sync=always", []func(*server.Options){natstest.SyncAlways}},
		// The store in tmpfs: shows the cost of the code without the disk's metadata operations, which
		// dominate atomic batches on R1 file streams (see the package documentation).
		{"sync=default,dir=tmpfs", []func(*server.Options){tmpfsStore(b)}},
	}
	shapes := []struct{ events, pools int }{{1, 1}, {1, 8}, {64, 1}, {64, 8}, {256, 8}}
	for _, mode := range syncModes {
		for _, shape := range shapes {
			b.Run(fmt.Sprintf("%s/events=%d/pools=%d", mode.name, shape.events, shape.pools), func(b *testing.B) {
				benchAppend(b, mode.opts, shape.events, shape.pools)
			})
		}
	}
}

// tmpfsStore returns a server option that puts the store in a fresh directory under /dev/shm.
func tmpfsStore(b *testing.B) func(*server.Options) {
	return func(o *server.Options) {
		dir, err := os.MkdirTemp("/dev/shm", "capacityd-bench-")
		if err != nil {
			b.Skipf("no tmpfs: %v", err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		o.StoreDir = dir
	}
}

// benchAppend runs b.N appends of size events spread over pools goroutines, one pool each.
func benchAppend(b *testing.B, serverOpts []func(*server.Options), size, pools int) {
	srv := natstest.RunServer(b, serverOpts...)
	_, js := natstest.Connect(b, srv)
	ctx := context.Background()
	store, err := streams.New(ctx, js, "bench")
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"type":"hold","hold":"h-0000000000","units":3,"expires":"2026-01-01T00:00:00Z","owner":"svc-a"}`)
	batches := make([][]streams.Event, pools)
	for p := range batches {
		batches[p] = make([]streams.Event, size)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range pools {
		wg.Go(func() {
			pool := fmt.Sprintf("pool-%d", p)
			var last uint64
			for i := p; i < b.N; i += pools {
				evs := batches[p]
				for j := range evs {
					evs[j] = streams.Event{Type: "pool.held", Version: 1, ID: fmt.Sprintf("%s-%d-%d", pool, i, j), Data: data}
				}
				last, err = store.Append(ctx, pool, last, evs)
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*size)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/append")
}
