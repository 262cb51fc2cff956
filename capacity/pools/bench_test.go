package pools_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/e2e/stacktest"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats-server/v2/server"
)

// BenchmarkHotPool measures group commit on one hot pool: 64 concurrent
// callers doing quantity-1 holds in-process against an embedded server.
//
//	go test -run x -bench HotPool -benchtime 100000x ./capacity/pools/
func BenchmarkHotPool(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts []func(*server.Options)
	}{
		{"sync=interval", nil},
		{"sync=always", []func(*server.Options){natstest.SyncAlways}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s := natstest.RunServer(b, mode.opts...)
			st := stacktest.NewStack(b, s, region, pools.Options{})
			now := time.Now()
			define(b, st.Service, "hot", capacity.MaxCapacity, now)
			holds(b, st.Service, func(int64) string { return "hot" })
			stats := st.Service.Stats()
			b.ReportMetric(float64(stats.Events)/float64(max(1, stats.Appends)), "events/append")
		})
	}
}

// BenchmarkManyPools spreads quantity-1 holds from 64 callers over 1,000
// pools: little to batch per pool, so it measures the per-append cost, and
// what committing several pools' appends as one atomic batch saves.
//
//	go test -run x -bench ManyPools -benchtime 50000x ./capacity/pools/
func BenchmarkManyPools(b *testing.B) {
	for _, mode := range []struct {
		name  string
		opts  []func(*server.Options)
		batch bool
	}{
		{"sync=interval", nil, false},
		{"sync=interval/batch=on", nil, true},
		{"sync=always", []func(*server.Options){natstest.SyncAlways}, false},
		{"sync=always/batch=on", []func(*server.Options){natstest.SyncAlways}, true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s := natstest.RunServer(b, mode.opts...)
			st := stacktest.NewStack(b, s, region, pools.Options{BatchAcrossPools: mode.batch})
			now := time.Now()
			const nPools = 1000
			for i := range nPools {
				define(b, st.Service, fmt.Sprint("p", i), capacity.MaxCapacity, now)
			}
			before := st.Service.Stats()
			holds(b, st.Service, func(n int64) string { return fmt.Sprint("p", n%nPools) })
			stats := st.Service.Stats()
			if batches := stats.Batches - before.Batches; batches > 0 {
				b.ReportMetric(float64(stats.BatchedCommits-before.BatchedCommits)/float64(batches), "commits/batch")
			}
		})
	}
}

// holds runs b.N quantity-1 holds from 64 concurrent callers, the n-th on
// the pool poolOf(n), and reports holds/s and the p50 and p99 latency.
func holds(b *testing.B, svc *pools.Service, poolOf func(n int64) string) {
	const callers = 64
	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range callers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				t0 := time.Now()
				_, err := svc.Execute(context.Background(), poolOf(n), capacity.Hold{ReservationID: fmt.Sprint("h", n), Quantity: 1, TTL: time.Hour})
				lat[c] = append(lat[c], time.Since(t0))
				if err != nil {
					b.Errorf("hold: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "holds/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkHotPoolOpenLoop offers quantity-1 holds at a fixed rate, open
// loop (each latency runs from the hold's intended send time, so a stall
// counts for every hold due during it), to a pool that already has 100,000
// live holds, in-process against an embedded server that fsyncs every
// write: what the snapshots of a large pool cost its callers, without HTTP
// and a load generator in the way. One falls in the 20,000 holds measured,
// at about 115,000 events (see snapshotInterval); with a snapshot every
// eighth of the reservations, as before, two did.
//
//	go test -run x -bench HotPoolOpenLoop -benchtime 1x ./capacity/pools/
func BenchmarkHotPoolOpenLoop(b *testing.B) {
	const prefill, rate, duration = 100_000, 2000, 10 * time.Second
	s := natstest.RunServer(b, natstest.SyncAlways, func(o *server.Options) { o.MaxPayload = 8 << 20 })
	st := stacktest.NewStack(b, s, region, pools.Options{})
	define(b, st.Service, "hot", capacity.MaxCapacity, time.Now())
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for n := next.Add(1); n <= prefill; n = next.Add(1) {
				if _, err := st.Service.Execute(context.Background(), "hot", capacity.Hold{ReservationID: fmt.Sprint("f", n), Quantity: 1, TTL: time.Hour}); err != nil {
					b.Errorf("hold: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	before := st.Service.Stats().Snapshots
	b.ResetTimer()
	for i := range b.N {
		total := int64(duration.Seconds() * rate)
		interval := time.Second / rate
		lat := make([]time.Duration, total)
		next.Store(0)
		start := time.Now().Add(10 * time.Millisecond)
		for range 256 { // enough in flight for any stall this benchmark sees
			wg.Go(func() {
				for n := next.Add(1) - 1; n < total; n = next.Add(1) - 1 {
					intended := start.Add(time.Duration(n) * interval)
					time.Sleep(time.Until(intended))
					_, err := st.Service.Execute(context.Background(), "hot", capacity.Hold{ReservationID: fmt.Sprint("o", i, "-", n), Quantity: 1, TTL: time.Hour})
					lat[n] = time.Since(intended)
					if err != nil {
						b.Errorf("hold: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(lat[len(lat)*999/1000].Microseconds()), "p99.9-µs")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	}
	b.ReportMetric(float64(st.Service.Stats().Snapshots-before)/float64(b.N), "snapshots/op")
}
