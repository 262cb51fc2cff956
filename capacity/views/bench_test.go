package views

import (
	"fmt"
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
