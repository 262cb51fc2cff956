package capacity_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// benchPool returns a defined pool of the given capacity and a window long
// enough for any benchmark.
func benchPool(b *testing.B, units int) *capacity.Pool {
	d := slot()
	d.Capacity, d.EndsAt = units, t0.Add(1000*time.Hour)
	p := &capacity.Pool{}
	mustDo(b, p, d, t0)
	return p
}

// BenchmarkDecideHold decides and evolves holds of one unit that all fit,
// as the writer does for a hot pool.
func BenchmarkDecideHold(b *testing.B) {
	const units = 1_000_000
	ids := make([]string, units)
	for i := range ids {
		ids[i] = "r" + strconv.Itoa(i)
	}
	p := benchPool(b, units)
	when := t0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%units == 0 && i > 0 {
			b.StopTimer()
			p = benchPool(b, units)
			b.StartTimer()
		}
		when = when.Add(time.Microsecond)
		events, err := capacity.Decide(p, capacity.Hold{ReservationID: ids[i%units], Quantity: 1, TTL: 10 * time.Minute}, when)
		if err != nil || len(events) != 1 {
			b.Fatalf("hold %d: %v, %v", i, events, err)
		}
		p.Evolve(events[0], p.Version+1)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "holds/s")
}

// BenchmarkDecideHoldFullPool decides holds on a pool full of 10,000 live
// holds: each is refused, and the lapse memo spares a scan per refusal.
func BenchmarkDecideHoldFullPool(b *testing.B) {
	const units = 10_000
	p := benchPool(b, units)
	for i := range units {
		mustDo(b, p, capacity.Hold{ReservationID: "r" + strconv.Itoa(i), Quantity: 1, TTL: time.Hour}, t0)
	}
	cmd := capacity.Hold{ReservationID: "late", Quantity: 1, TTL: time.Minute}
	when := t0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		when = when.Add(time.Microsecond) // stays far below the first deadline
		if _, err := capacity.Decide(p, cmd, when); capacity.ErrorCode(err) != capacity.EINSUFFICIENT {
			b.Fatalf("hold on full pool: %v", err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rejections/s")
}

// BenchmarkSnapshotLargePool loads (decodes the snapshot of) a pool with
// 1,000,000 events and 200,000 reservations over 11 days: every one held,
// extended, confirmed and released, with a capacity change between. It
// reports the snapshot's size and what stays whole; reload-ms is what a
// writer's load takes besides reading from the stream: the snapshot taken
// as late as the writer may take it (the tail is the most events it lets go
// by between snapshots, half the whole reservations), decoded, then the
// tail decoded from group commits of 32 events and evolved.
//
//	go test -run x -bench SnapshotLargePool -benchtime 5x ./capacity/
func BenchmarkSnapshotLargePool(b *testing.B) {
	const reservations, total = 200_000, 1 + 5*200_000
	const tail = 17_280 / 2 // the whole reservations at the end, halved (see pools' snapshotInterval)
	p := &capacity.Pool{}
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	seq := uint64(0)
	var snapshot []byte
	var commits [][]byte // the tail after snapshot, as stored
	var pending []capacity.Event
	apply := func(e capacity.Event) {
		seq++
		p.Evolve(e, seq)
		switch {
		case seq == total-tail:
			var err error
			if snapshot, err = p.MarshalSnapshot(); err != nil {
				b.Fatal(err)
			}
		case seq > total-tail:
			if pending = append(pending, e); len(pending) == 32 || seq == total {
				_, data, err := capacity.EncodeCommit(pending)
				if err != nil {
					b.Fatal(err)
				}
				commits, pending = append(commits, data), pending[:0]
			}
		}
	}
	apply(capacity.PoolDefined{Pool: "big", Region: "r", Kind: "picking", StartsAt: at.Add(30 * 24 * time.Hour), EndsAt: at.Add(31 * 24 * time.Hour), Capacity: 1_000_000, DefinedAt: at})
	for i := range reservations {
		id := fmt.Sprintf("order-%07d", i)
		at = at.Add(5 * time.Second)
		apply(capacity.Held{ReservationID: id, Quantity: 2, TTL: 10 * time.Minute, ExpiresAt: at.Add(10 * time.Minute), At: at})
		apply(capacity.Extended{ReservationID: id, ExpiresAt: at.Add(20 * time.Minute), At: at})
		apply(capacity.Confirmed{ReservationID: id, Quantity: 1, At: at})
		apply(capacity.CapacityChanged{From: 1_000_000, To: 1_000_000 - i%2, At: at})
		apply(capacity.Released{ReservationID: id, At: at})
	}
	data, err := p.MarshalSnapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := capacity.UnmarshalSnapshot(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq), "events")
	b.ReportMetric(float64(len(data))/(1<<20), "snapshot-MiB")
	b.ReportMetric(float64(len(p.Reservations)), "whole")
	b.ReportMetric(float64(p.RetiredCount()), "retired")
	b.StopTimer()
	start := time.Now()
	for range b.N {
		q, err := capacity.UnmarshalSnapshot(snapshot)
		if err != nil {
			b.Fatal(err)
		}
		next := q.Version + 1
		for _, c := range commits {
			events, err := capacity.DecodeCommit(capacity.CommitType, capacity.SchemaVersion, c)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range events {
				q.Evolve(e, next)
				next++
			}
		}
		if q.Version != seq {
			b.Fatalf("reloaded at %d, want %d", q.Version, seq)
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "reload-ms")
}

// BenchmarkCloneHotPool clones a pool of 70,000 live holds, as the writer
// does on its own goroutine for each snapshot of the hot pool, and encodes
// the clone, as the snapshot writer then does on its own.
//
//	go test -run x -bench CloneHotPool ./capacity/
func BenchmarkCloneHotPool(b *testing.B) {
	const holds = 70_000
	p := benchPool(b, holds)
	when := t0
	for i := range holds {
		when = when.Add(time.Millisecond)
		events, err := capacity.Decide(p, capacity.Hold{ReservationID: fmt.Sprintf("hold-%08d", i), Quantity: 1, TTL: time.Hour}, when)
		if err != nil {
			b.Fatal(err)
		}
		p.Evolve(events[0], p.Version+1)
	}
	b.Run("clone", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = p.Clone()
		}
	})
	b.Run("encode", func(b *testing.B) {
		c := p.Clone()
		b.ReportAllocs()
		for range b.N {
			if _, err := c.MarshalSnapshot(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
