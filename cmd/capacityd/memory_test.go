package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/views"
)

// BenchmarkMemoryPerPool measures what the whole process (write side, read
// models and the embedded NATS server) holds per pool: b.N pools, each with
// two live holds (reservation ids unique across pools, as clients make
// them), written through the service, then the read models caught up.
// B/pool is heap and stacks in use after a GC, against before the pools
// were made; RSS-MB is the whole process's resident set at the end, and
// RSS-B/pool its growth per pool (both after freed memory went back to the
// OS).
//
//	go test -run x -bench MemoryPerPool -benchtime 20000x ./cmd/capacityd/
//
// CAPACITY_HEAPPROFILE=file writes a heap profile of that moment.
// CAPACITY_BENCH_SETTLE=duration measures that long after the load instead:
// the embedded server keeps what the writes just made (the last message
// block's cache, about 8 MB a stream, for 10 s; message ids for the 2-minute
// duplicate window), which a process holding its pools quietly does not.
func BenchmarkMemoryPerPool(b *testing.B) { memoryPerPool(b, false) }

// BenchmarkMemoryPerPoolEvicted is BenchmarkMemoryPerPool once the write
// side has let every pool go (IdleTimeout shortened to a second; a minute
// by default): what a process holds for pools with live holds that nobody
// is writing now, the read models' copy and the server's.
//
//	go test -run x -bench MemoryPerPoolEvicted -benchtime 20000x ./cmd/capacityd/
func BenchmarkMemoryPerPoolEvicted(b *testing.B) { memoryPerPool(b, true) }

func memoryPerPool(b *testing.B, evict bool) {
	a, stop := startTestConfig(b, b.TempDir(), func(c *Config) {
		if evict {
			c.IdleTimeout = time.Second
		}
	})
	defer stop()
	ctx := context.Background()
	before, rssBefore := heapInUse(), residentBytes()
	start := time.Now().Add(24 * time.Hour)
	last := definePools(b, a, b.N, func(i int) (string, time.Time) { return fmt.Sprintf("mem-%d", i), start }, 2)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := a.readModels.waitFor(wctx, views.MinPositions{"": last}); err != nil {
		b.Fatal(err)
	}
	for evict && a.pools.Loaded() > 0 {
		if wctx.Err() != nil {
			b.Fatalf("%d pools still loaded", a.pools.Loaded())
		}
		time.Sleep(100 * time.Millisecond) // polls the janitor, which runs every IdleTimeout/2
	}
	b.StopTimer()
	if settle, err := time.ParseDuration(os.Getenv("CAPACITY_BENCH_SETTLE")); err == nil && b.N > 1 {
		time.Sleep(settle) // a quiet process, not a poll: nothing to wait for but time
	}
	reportMemory(b, before, rssBefore, "pool")
	b.ReportMetric(float64(a.pools.Loaded()), "pools-loaded")
}

// BenchmarkMemoryPerReservation measures what the whole process holds per
// live hold: 100 pools defined first, then b.N holds of one unit with
// unique ids spread over them through the service, the read models caught
// up; every pool stays loaded. Units as in BenchmarkMemoryPerPool, per
// reservation.
//
//	go test -run x -bench MemoryPerReservation -benchtime 100000x ./cmd/capacityd/
func BenchmarkMemoryPerReservation(b *testing.B) {
	a, stop := startTestIn(b, b.TempDir())
	defer stop()
	ctx := context.Background()
	const npools = 100
	start := time.Now().Add(24 * time.Hour)
	for i := range npools {
		pool := fmt.Sprintf("mem-%d", i)
		if _, err := a.pools.Execute(ctx, pool, capacity.DefinePool{Pool: pool, Region: "r1", Kind: "delivery",
			StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: capacity.MaxCapacity}); err != nil {
			b.Fatal(err)
		}
	}
	before, rssBefore := heapInUse(), residentBytes()
	var next atomic.Int64
	var last atomic.Uint64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				pool := fmt.Sprintf("mem-%d", i%npools)
				res, err := a.pools.Execute(ctx, pool, capacity.Hold{ReservationID: fmt.Sprintf("order-%08d", i), Quantity: 1, TTL: time.Hour})
				if err != nil {
					b.Error(err)
					return
				}
				for v := last.Load(); res.Pool.Version > v && !last.CompareAndSwap(v, res.Pool.Version); v = last.Load() {
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := a.readModels.waitFor(wctx, views.MinPositions{"": last.Load()}); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportMemory(b, before, rssBefore, "reservation")
}

// BenchmarkMemoryPerIdlePool measures what the whole process holds per
// defined pool with no reservations once the write side has let it go: b.N
// pools defined through the service in-process (the call web's define
// handler makes; over HTTP a million take far longer), a hundred per hourly
// slot, the read models caught up and every entity evicted (IdleTimeout
// shortened to a second; a minute by default). Units as in
// BenchmarkMemoryPerPool. A million pools take several minutes, so it runs
// only when asked:
//
//	CAPACITY_BENCH_IDLE=1 go test -run x -bench MemoryPerIdlePool -benchtime 1000000x -timeout 60m ./cmd/capacityd/
func BenchmarkMemoryPerIdlePool(b *testing.B) {
	if os.Getenv("CAPACITY_BENCH_IDLE") == "" {
		b.Skip("set CAPACITY_BENCH_IDLE=1 to run (a million pools take minutes)")
	}
	a, stop := startTestConfig(b, b.TempDir(), func(c *Config) {
		c.IdleTimeout = time.Second
		// The sweep's default period, not the tests' 200 ms: a sweep scans
		// every read-model row under the models' read lock (about 150 ms at
		// a million pools), and five a second starve the projection.
		c.SweepEvery = DefaultConfig().SweepEvery
		// No read-model checkpoint in flight when it measures: at a million
		// pools one is encoded into a spool file and stored from it for the
		// seconds it takes, with its buffers and the object store's chunks
		// in flight (README, "Starts"); that is measured apart, in
		// RSS-peak-MB of a run with CAPACITY_BENCH_CHECKPOINTS=1.
		if os.Getenv("CAPACITY_BENCH_CHECKPOINTS") == "" {
			c.CheckpointEvery, c.CheckpointInterval = 1<<40, 24*time.Hour
		}
	})
	defer stop()
	before, rssBefore := heapInUse(), residentBytes()
	start := time.Now().Truncate(time.Hour).Add(24 * time.Hour)
	began := time.Now()
	last := definePools(b, a, b.N, func(i int) (string, time.Time) {
		return fmt.Sprintf("idle-%07d", i), start.Add(time.Duration(i/100) * time.Hour)
	}, 0)
	b.Logf("%d pools defined in %v", b.N, time.Since(began).Round(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		err := a.readModels.waitFor(wctx, views.MinPositions{"": last})
		wcancel()
		if err == nil {
			break
		} else if ctx.Err() != nil {
			b.Fatal(err)
		}
		b.Logf("read models catching up: %v", err)
	}
	b.Logf("read models caught up after %v", time.Since(began).Round(time.Second))
	for a.pools.Loaded() > 0 {
		if ctx.Err() != nil {
			b.Fatalf("%d pools still loaded", a.pools.Loaded())
		}
		time.Sleep(100 * time.Millisecond) // polls the janitor, which runs every IdleTimeout/2
	}
	b.StopTimer()
	reportMemory(b, before, rssBefore, "pool")
}

// definePools defines n pools through the service, in-process (the calls
// web's handlers make), 32 at a time, each with holds live holds of one
// unit, and returns the highest stream sequence written. name gives pool
// i's id and start.
func definePools(b *testing.B, a *app, n int, name func(i int) (string, time.Time), holds int) uint64 {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var last atomic.Uint64
	note := func(v uint64) {
		for l := last.Load(); v > l && !last.CompareAndSwap(l, v); l = last.Load() {
		}
	}
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				pool, start := name(int(i))
				res, err := execute(ctx, a, pool, capacity.DefinePool{Pool: pool, Region: "r1", Kind: "delivery",
					StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 10})
				if err != nil {
					b.Error(err)
					return
				}
				note(res.Pool.Version)
				for h := range holds {
					res, err := execute(ctx, a, pool, capacity.Hold{ReservationID: fmt.Sprintf("%s-h%d", pool, h), Quantity: 1, TTL: time.Hour})
					if err != nil {
						b.Error(err)
						return
					}
					note(res.Pool.Version)
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return last.Load()
}

// execute runs cmd on pool as a client of the API would: an unavailable
// answer (the store slow to answer, under the load of a million pools on a
// shared machine) is retried, a few times; the command is idempotent.
func execute(ctx context.Context, a *app, pool string, cmd capacity.Command) (pools.Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := a.pools.Execute(ctx, pool, cmd)
		if err == nil || capacity.ErrorCode(err) != capacity.EUNAVAILABLE || attempt == 5 {
			return res, err
		}
		time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
	}
}

// reportMemory reports heap and resident set growth per unit since before
// and rssBefore, and the resident set now; CAPACITY_HEAPPROFILE=file
// writes a heap profile of this moment.
func reportMemory(b *testing.B, before, rssBefore uint64, unit string) {
	b.Helper()
	loaded := heapInUse()
	rss := residentBytes()
	if path := os.Getenv("CAPACITY_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	b.ReportMetric(float64(loaded-before)/float64(b.N), "B/"+unit)
	b.ReportMetric((float64(rss)-float64(rssBefore))/float64(b.N), "RSS-B/"+unit)
	b.ReportMetric(float64(rss)/(1<<20), "RSS-MB")
	b.ReportMetric(float64(procStatus("VmHWM"))/(1<<20), "RSS-peak-MB")
}

// residentBytes returns the whole process's resident set (VmRSS) after
// handing freed memory back to the operating system, or 0 where
// /proc/self/status cannot be read.
func residentBytes() uint64 {
	debug.FreeOSMemory()
	return procStatus("VmRSS")
}

// procStatus returns a size in bytes from /proc/self/status (VmRSS, VmHWM:
// the peak resident set), or 0 where it cannot be read.
func procStatus(field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heapInUse returns the heap and goroutine stacks in use after a GC.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse // goroutine stacks count too
}
