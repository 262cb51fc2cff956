package views

import (
	"fmt"
	"runtime"
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
