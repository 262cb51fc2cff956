package views

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// BenchmarkAvailabilityQuery queries one region and day (50 pools, each
// with live and lapsed holds) out of 10,000 pools over 200 days.
func BenchmarkAvailabilityQuery(b *testing.B) {
	a := NewAvailability()
	var seq uint64
	for i := range 10_000 {
		id := fmt.Sprintf("pool-%05d", i)
		start := epoch.Add(time.Duration(i%200)*24*time.Hour + time.Duration(i/200)*15*time.Minute)
		seq++
		a.Apply(id, seq, capacity.PoolDefined{Pool: id, Region: "eu", Kind: "delivery", StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 100})
		for j := range 20 {
			seq++
			at := epoch.Add(time.Duration(j) * time.Minute)
			a.Apply(id, seq, capacity.Held{ReservationID: fmt.Sprint("r", j), Quantity: 1, TTL: 10 * time.Minute, ExpiresAt: at.Add(10 * time.Minute), At: at})
		}
	}
	day := epoch.Add(17 * 24 * time.Hour)
	q := AvailabilityQuery{Region: "eu", Kind: "delivery", From: day, To: day.Add(24 * time.Hour)}
	now := epoch.Add(15 * time.Minute) // some holds lapsed, some live
	page, err := a.Query(q, now)
	if err != nil || len(page.Pools) != 50 || page.Pools[0].Held != 14 {
		b.Fatalf("query = %d pools (held %d), %v; want 50", len(page.Pools), page.Pools[0].Held, err)
	}
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Query(q, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "queries/s")
}

// BenchmarkMemoryPerPool measures what the three read models of one
// process hold per pool: b.N pools, each defined then given two live holds
// (one commit each), applied to the three models of one Models, as cmd/capacityd
// feeds them. Heap in use after a GC,
// against before.
//
//	go test -run x -bench MemoryPerPool -benchtime 20000x ./capacity/views/
func BenchmarkMemoryPerPool(b *testing.B) {
	before := heapInUse()
	models := New()
	var seq uint64
	apply := func(pool string, events ...capacity.Event) {
		seq++
		models.Apply(pool, seq, events...)
	}
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("mem-%d", i)
		start := epoch.Add(time.Duration(i%500) * time.Hour)
		apply(id, capacity.PoolDefined{Pool: id, Region: "r1", Kind: "delivery", StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 10, DefinedAt: epoch})
		for h := range 2 {
			at := epoch.Add(time.Duration(i) * time.Millisecond)
			apply(id, capacity.Held{ReservationID: fmt.Sprintf("%s-h%d", id, h), Quantity: 1, TTL: time.Hour, ExpiresAt: at.Add(time.Hour), At: at})
		}
	}
	b.StopTimer()
	loaded := heapInUse()
	b.ReportMetric(float64(loaded-before)/float64(b.N), "B/pool")
	runtime.KeepAlive(models)
}

// BenchmarkMemoryPerReservation measures what the read models hold per
// reservation: 100 pools, b.N holds spread over them.
//
//	go test -run x -bench MemoryPerReservation -benchtime 200000x ./capacity/views/
func BenchmarkMemoryPerReservation(b *testing.B) {
	models := New()
	var seq uint64
	apply := func(pool string, events ...capacity.Event) {
		seq++
		models.Apply(pool, seq, events...)
	}
	const npools = 100
	for i := range npools {
		id := fmt.Sprintf("mem-%d", i)
		apply(id, capacity.PoolDefined{Pool: id, Region: "r1", Kind: "delivery", StartsAt: epoch, EndsAt: epoch.Add(time.Hour), Capacity: 1 << 30, DefinedAt: epoch})
	}
	mid := heapInUse()
	b.ResetTimer()
	for i := range b.N {
		at := epoch.Add(time.Duration(i) * time.Millisecond)
		apply(fmt.Sprintf("mem-%d", i%npools), capacity.Held{ReservationID: fmt.Sprintf("order-%08d", i), Quantity: 1, TTL: time.Hour, ExpiresAt: at.Add(time.Hour), At: at})
	}
	b.StopTimer()
	loaded := heapInUse()
	b.ReportMetric(float64(loaded-mid)/float64(b.N), "B/reservation")
	runtime.KeepAlive(models)
}

// heapInUse returns the heap in use after a GC.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkCheckpoint writes and reads a checkpoint of 1,000 pools holding
// 500,000 reservations in memory: the CPU cost of a checkpoint and of a
// start from one, without the object store.
//
//	go test -run x -bench Checkpoint -benchtime 3x ./capacity/views/
func BenchmarkCheckpoint(b *testing.B) {
	const npools, nres = 1000, 500_000
	m := New()
	var seq uint64
	for i := range npools {
		id := fmt.Sprintf("pool-%05d", i)
		seq++
		m.Apply(id, seq, capacity.PoolDefined{Pool: id, Region: "eu", Kind: "delivery", StartsAt: epoch, EndsAt: epoch.Add(time.Hour), Capacity: 1 << 30, DefinedAt: epoch})
	}
	for i := range nres {
		at := epoch.Add(time.Duration(i) * time.Millisecond)
		seq++
		pool := fmt.Sprintf("pool-%05d", i%npools)
		m.Apply(pool, seq, capacity.Held{ReservationID: fmt.Sprintf("r%d", i), Quantity: 1, TTL: time.Hour, ExpiresAt: at.Add(time.Hour), At: at})
		if i%2 == 1 {
			seq++
			m.Apply(pool, seq, capacity.Confirmed{ReservationID: fmt.Sprintf("r%d", i), At: at})
		}
	}
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		b.Fatal(err)
	}
	b.Run("write", func(b *testing.B) {
		cpu := cpuTime()
		for b.Loop() {
			buf.Reset()
			if _, err := m.WriteCheckpoint(&buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/nres, "cpu-ns/reservation")
		b.ReportMetric(float64(buf.Len())/nres, "B/reservation")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/nres, "ns/reservation")
	})
	b.Run("read", func(b *testing.B) {
		cpu := cpuTime()
		for b.Loop() {
			if _, err := New().ReadCheckpoint(bytes.NewReader(buf.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/nres, "cpu-ns/reservation")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/nres, "ns/reservation")
	})
}

// cpuTime returns the CPU time (user + system) the process has used,
// garbage collection included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCheckpointApplyWait measures how long Apply waits while a
// checkpoint is written: a writer goroutine applies a hold to a random
// pool every 100 µs (a busy stream) while WriteCheckpoint encodes into
// io.Discard, and the longest of those Apply calls, from the call to its
// return, is max-apply-wait-ms. Three shapes: a million idle pools
// (CAPACITY_BENCH_POOLS sets how many), 1,000 pools holding 500,000
// reservations (BenchmarkCheckpoint's), and one hot pool holding 200,000.
//
//	go test -run x -bench CheckpointApplyWait -benchtime 3x -timeout 30m ./capacity/views/
func BenchmarkCheckpointApplyWait(b *testing.B) {
	idle := 1_000_000
	if v := os.Getenv("CAPACITY_BENCH_POOLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("$CAPACITY_BENCH_POOLS = %q: want a positive integer", v)
		}
		idle = n
	}
	for _, tc := range []struct {
		name         string
		npools, nres int
	}{
		{"idle-pools", idle, 0},
		{"reservations", 1000, 500_000},
		{"hot-pool", 1, 200_000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m := New()
			var seq uint64
			for i := range tc.npools {
				id := fmt.Sprintf("pool-%07d", i)
				start := epoch.Add(time.Duration(i/100) * time.Hour)
				seq++
				m.Apply(id, seq, capacity.PoolDefined{Pool: id, Region: "eu", Kind: "delivery", StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 1 << 30, DefinedAt: epoch})
			}
			for i := range tc.nres {
				at := epoch.Add(time.Duration(i) * time.Millisecond)
				seq++
				m.Apply(fmt.Sprintf("pool-%07d", i%tc.npools), seq, capacity.Held{ReservationID: fmt.Sprintf("r%d", i), Quantity: 1, TTL: time.Hour, ExpiresAt: at.Add(time.Hour), At: at})
			}
			// applyUntil applies a hold every 100 µs until done is closed
			// and returns how long each Apply took.
			applyUntil := func(done <-chan struct{}, seed uint64) []time.Duration {
				rng := rand.New(rand.NewPCG(seed, 7))
				var waits []time.Duration
				for {
					select {
					case <-done:
						return waits
					default:
					}
					at := epoch.Add(time.Duration(seq) * time.Millisecond)
					seq++
					pool := fmt.Sprintf("pool-%07d", rng.IntN(tc.npools))
					held := capacity.Held{ReservationID: fmt.Sprintf("w%d", seq), Quantity: 1, TTL: time.Hour, ExpiresAt: at.Add(time.Hour), At: at}
					start := time.Now()
					m.Apply(pool, seq, held)
					waits = append(waits, time.Since(start))
					time.Sleep(100 * time.Microsecond)
				}
			}
			// The same without a checkpoint, for a second: what the
			// machine (scheduler, garbage collector) adds on its own.
			done := make(chan struct{})
			time.AfterFunc(time.Second, func() { close(done) })
			baseline := slices.Max(append(applyUntil(done, 0), 0))
			var all []time.Duration
			var written time.Duration
			for i := 0; b.Loop(); i++ {
				done := make(chan struct{})
				var waits []time.Duration
				var wg sync.WaitGroup
				wg.Go(func() { waits = applyUntil(done, uint64(i)+1) })
				start := time.Now()
				if _, err := m.WriteCheckpoint(io.Discard); err != nil {
					b.Fatal(err)
				}
				written += time.Since(start)
				close(done)
				wg.Wait()
				all = append(all, waits...)
			}
			slices.Sort(all)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(all[len(all)-1]), "max-apply-wait-ms")
			b.ReportMetric(ms(all[len(all)*99/100]), "p99-apply-wait-ms")
			b.ReportMetric(ms(baseline), "no-checkpoint-max-apply-wait-ms")
			b.ReportMetric(float64(written.Milliseconds())/float64(b.N), "write-ms")
			b.ReportMetric(float64(len(all))/float64(b.N), "applies/write")
		})
	}
}
