package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
)

// BenchmarkMemoryPerPool measures what the whole process (write side, read
// models and the embedded NATS server) holds per pool: b.N pools, each with
// two live holds, written through the service, then the read models caught
// up. Heap and stacks in use after a GC, against before the pools were made.
//
//	go test -run x -bench MemoryPerPool -benchtime 20000x ./cmd/capacityd/
//
// CAPACITY_HEAPPROFILE=file writes a heap profile of that moment.
func BenchmarkMemoryPerPool(b *testing.B) {
	a, stop := startTestIn(b, b.TempDir())
	defer stop()
	ctx := context.Background()
	before := heapInUse()
	start := time.Now().Add(24 * time.Hour)
	var next atomic.Int64
	var wg sync.WaitGroup
	var last atomic.Uint64
	b.ResetTimer()
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				pool := fmt.Sprintf("mem-%d", i)
				_, err := a.pools.Execute(ctx, pool, capacity.DefinePool{Pool: pool, Region: "r1", Kind: "delivery",
					StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 10})
				if err != nil {
					b.Error(err)
					return
				}
				for h := range 2 {
					res, err := a.pools.Execute(ctx, pool, capacity.Hold{ReservationID: fmt.Sprintf("h%d", h), Quantity: 1, TTL: time.Hour})
					if err != nil {
						b.Error(err)
						return
					}
					for v := last.Load(); res.Pool.Version > v && !last.CompareAndSwap(v, res.Pool.Version); v = last.Load() {
					}
				}
			}
		})
	}
	wg.Wait()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := a.readModels.waitFor(wctx, views.MinPositions{"": last.Load()}); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	loaded := heapInUse()
	if path := os.Getenv("CAPACITY_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	b.ReportMetric(float64(loaded-before)/float64(b.N), "B/pool")
	b.ReportMetric(float64(a.pools.Loaded()), "pools-loaded")
}

// heapInUse returns the heap and goroutine stacks in use after a GC.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse // goroutine stacks count too
}
