package views

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"pgregory.net/rapid"
)

// TestFuzzyCheckpointReplay: models fed a random history, some of it from
// a checkpoint they loaded (pools kept encoded or not, ids as loaded
// hashes), begin a checkpoint at P0; further commits are applied between
// every two rows the checkpoint encodes (and every few index entries),
// some to pools already written, some to pools written later, some
// making new pools. Fresh models that load the checkpoint and are fed
// every commit after P0 (those some rows hold already included) equal a
// fresh fold of the whole history: every model (Replay.Diff) and verify's
// figures, reservation ids per pool included (refoldCheck).
func TestFuzzyCheckpointReplay(t *testing.T) {
	defer func(old int) { lazyBytes = old }(lazyBytes)
	rapid.Check(t, func(rt *rapid.T) {
		events, end := history(t, rapid.Uint64().Draw(rt, "seed"), rapid.IntRange(1, 40).Draw(rt, "pools"),
			rapid.IntRange(1, 1500).Draw(rt, "commands"))
		events = withOddPools(rt, events)
		if len(events) == 0 {
			return
		}
		loadAt := rapid.IntRange(0, len(events)).Draw(rt, "load-at") // 0: no checkpoint loaded first
		begin := rapid.IntRange(loadAt, len(events)).Draw(rt, "begin")
		lazyBytes = rapid.SampledFrom([]int{0, 200, math.MaxInt}).Draw(rt, "lazy-bytes")

		m := New()
		if loadAt > 0 {
			first := New()
			for _, r := range events[:loadAt] {
				first.Apply(r.pool, r.seq, r.events...)
			}
			var buf bytes.Buffer
			if _, err := first.WriteCheckpoint(&buf); err != nil {
				rt.Fatal(err)
			}
			if _, err := m.ReadCheckpoint(&buf); err != nil {
				rt.Fatal(err)
			}
		}
		for _, r := range events[loadAt:begin] {
			m.Apply(r.pool, r.seq, r.events...)
		}
		next, pauses := begin, 0
		// Large pools (any, or none) copied and encoded without the lock;
		// commits are applied to them meanwhile too.
		opts := checkpointOptions{
			cloneAbove: rapid.SampledFrom([]int{0, 3, math.MaxInt}).Draw(rt, "clone-above"),
			copyAbove:  rapid.SampledFrom([]int{0, 500, math.MaxInt}).Draw(rt, "copy-above"),
			pause: func() {
				pauses++
				for n := rapid.IntRange(0, 3).Draw(rt, "applies"); n > 0 && next < len(events); n-- {
					r := events[next]
					m.Apply(r.pool, r.seq, r.events...)
					next++
				}
			},
		}
		c, err := m.beginCheckpoint(opts)
		if err != nil {
			rt.Fatal(err)
		}
		p0 := c.position
		var buf bytes.Buffer
		if err := c.write(&buf); err != nil {
			rt.Fatal(err)
		}
		for _, r := range events[next:] {
			m.Apply(r.pool, r.seq, r.events...)
		}
		if pauses < c.pools {
			rt.Fatalf("%d pauses for %d pools: the lock was not released between rows", pauses, c.pools)
		}

		restored := New()
		if pos, err := restored.ReadCheckpoint(&buf); err != nil || pos != p0 {
			rt.Fatalf("ReadCheckpoint = %d, %v; want %d", pos, err, p0)
		}
		// Each pool as loaded is the fold of its commits up to its own
		// last sequence (the replay applies the others).
		figures, _ := restored.Figures("", MaxLimit, end, nil)
		for _, f := range figures {
			var p capacity.Pool
			for _, r := range events {
				if r.pool == f.Pool && r.seq <= f.Seq {
					for _, e := range r.events {
						p.Evolve(e, r.seq)
					}
				}
			}
			want := p.ViewAt(end)
			want.HomeRegion = f.View.HomeRegion
			if f.View != want {
				rt.Fatalf("pool %s loaded at its sequence %d:\n got %+v\nwant %+v", f.Pool, f.Seq, f.View, want)
			}
		}
		replay := NewReplay()
		for _, r := range events {
			replay.Apply(r.pool, r.seq, r.events...)
			if r.seq > p0 {
				restored.Apply(r.pool, r.seq, r.events...)
			}
		}
		for _, at := range []time.Time{end, end.Add(-time.Minute)} {
			if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, at, 10); len(diffs) > 0 {
				rt.Fatalf("checkpoint at %d (begun after %d commits, %d applied while written) then the stream after it differs from the replay at %v:\n%s",
					p0, begin, next-begin, at, strings.Join(diffs, "\n"))
			}
			if diffs := replay.Diff(m.Availability, m.Reservations, m.Board, at, 10); len(diffs) > 0 {
				rt.Fatalf("models written while applying differ from the replay at %v:\n%s", at, strings.Join(diffs, "\n"))
			}
		}
		if got := refoldCheck(t, restored, events, end, nil); len(got) > 0 {
			rt.Fatalf("checkpoint then the stream after it: figures differ from a fresh fold: %v", got)
		}
		if got, want := restored.Reservations.Count(), m.Reservations.Count(); got != want {
			rt.Fatalf("restored reservation ids %d, want %d", got, want)
		}
	})
}

// withOddPools inserts, at random places, commits of pools the generated
// histories lack, and numbers the commits again: a pool held before it is
// defined (a row outside availability's index, with an indexed id), defined
// later or never, and a pool defined under another id than its subject's.
func withOddPools(rt *rapid.T, events []recorded) []recorded {
	define := func(id string) capacity.PoolDefined {
		return capacity.PoolDefined{Pool: id, Region: "eu", Kind: "delivery", StartsAt: epoch.Add(24 * time.Hour),
			EndsAt: epoch.Add(25 * time.Hour), Capacity: 5, DefinedAt: epoch}
	}
	for k := range rapid.IntRange(0, 3).Draw(rt, "odd-pools") {
		stray, alias := fmt.Sprintf("stray-%d", k), fmt.Sprintf("alias-%d", k)
		held := capacity.Held{ReservationID: fmt.Sprint("r", k), Quantity: 1, TTL: time.Minute, ExpiresAt: epoch.Add(time.Minute), At: epoch}
		i := rapid.IntRange(0, len(events)).Draw(rt, "stray-held-at")
		if j := rapid.IntRange(i, len(events)+1).Draw(rt, "stray-defined-at"); j <= len(events) {
			events = slices.Insert(events, j, recorded{pool: stray, events: []capacity.Event{define(stray)}})
		}
		events = slices.Insert(events, i, recorded{pool: stray, events: []capacity.Event{held}})
		i = rapid.IntRange(0, len(events)).Draw(rt, "alias-defined-at")
		events = slices.Insert(events, i, recorded{pool: alias, events: []capacity.Event{define("named-" + alias)}})
		i = rapid.IntRange(i+1, len(events)).Draw(rt, "alias-held-at")
		events = slices.Insert(events, i, recorded{pool: alias, events: []capacity.Event{held}})
	}
	for i := range events {
		events[i].seq = uint64(i + 1)
	}
	return events
}

// blockingWriter blocks its first Write until release is closed, and says
// on started that it has been called.
type blockingWriter struct {
	buf     bytes.Buffer
	started chan struct{}
	release chan struct{}
	once    atomic.Bool
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	if b.once.CompareAndSwap(false, true) {
		close(b.started)
		<-b.release
	}
	return b.buf.Write(p)
}

// TestCheckpointDoesNotBlockApply: while a checkpoint of many pools is
// written to a writer that blocks (a slow disk), Apply goes on, and the
// checkpoint, loaded and fed the commits after its position, equals the
// models.
func TestCheckpointDoesNotBlockApply(t *testing.T) {
	const npools = 5000 // 900 kB of checkpoint: the writer is called before the last row
	m := New()
	var events []recorded
	apply := func(pool string, e capacity.Event) {
		r := recorded{pool: pool, seq: uint64(len(events) + 1), events: []capacity.Event{e}}
		events = append(events, r)
		m.Apply(r.pool, r.seq, r.events...)
	}
	for i := range npools {
		id := fmt.Sprintf("pool-%05d", i)
		apply(id, capacity.PoolDefined{Pool: id, Region: "eu", Kind: "delivery", StartsAt: epoch, EndsAt: epoch.Add(time.Hour), Capacity: 10, DefinedAt: epoch})
	}
	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	written := make(chan error, 1)
	var p0 uint64
	go func() {
		var err error
		p0, err = m.WriteCheckpoint(w)
		written <- err
	}()
	select {
	case <-w.started:
	case err := <-written:
		t.Fatalf("checkpoint written without blocking: %v", err)
	}
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for i := range 2000 { // to pools written already and pools not yet
			at := epoch.Add(time.Duration(i) * time.Millisecond)
			apply(fmt.Sprintf("pool-%05d", i*9%npools), capacity.Held{ReservationID: fmt.Sprint("r", i), Quantity: 1, TTL: time.Hour, ExpiresAt: at.Add(time.Hour), At: at})
		}
		apply("new-pool", capacity.PoolDefined{Pool: "new-pool", Region: "eu", Kind: "delivery", StartsAt: epoch, EndsAt: epoch.Add(time.Hour), Capacity: 1, DefinedAt: epoch})
	}()
	select {
	case <-applied:
	case <-time.After(30 * time.Second):
		t.Fatal("Apply blocked while the checkpoint's writer was blocked")
	}
	close(w.release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if p0 != npools {
		t.Fatalf("checkpoint at %d, want the position when it began, %d", p0, npools)
	}
	restored := New()
	if _, err := restored.ReadCheckpoint(&w.buf); err != nil {
		t.Fatal(err)
	}
	replay := NewReplay()
	for _, r := range events {
		replay.Apply(r.pool, r.seq, r.events...)
		if r.seq > p0 {
			restored.Apply(r.pool, r.seq, r.events...)
		}
	}
	end := epoch.Add(time.Minute)
	if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, end, 10); len(diffs) > 0 {
		t.Fatalf("checkpoint then the stream after it differs from the replay:\n%s", strings.Join(diffs, "\n"))
	}
}

// A Refold or a restore while a checkpoint is written abandons it (a row
// written before may be the one replaced); the next checkpoint is whole.
// One checkpoint is written at a time.
func TestCheckpointAbandoned(t *testing.T) {
	events, end := history(t, 5, 10, 600)
	for _, tc := range []struct {
		name   string
		during func(m *Models)
	}{
		{"refold", func(m *Models) {
			var history []Commit
			for _, r := range events {
				if r.pool == events[0].pool {
					history = append(history, Commit{Seq: r.seq, Events: r.events})
				}
			}
			m.Refold(events[0].pool, history, nil)
		}},
		{"reset", func(m *Models) { m.Reset() }},
	} {
		for _, detach := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/detached=%v", tc.name, detach), func(t *testing.T) {
				abandon(t, tc.during, detach, events, end)
			})
		}
	}
}

// abandon runs during while a checkpoint is written, with every row
// encoded without the lock if detach, and checks that it is abandoned and
// that the next checkpoint is whole.
func abandon(t *testing.T, during func(*Models), detach bool, events []recorded, end time.Time) {
	m := New()
	for _, r := range events {
		m.Apply(r.pool, r.seq, r.events...)
	}
	pauses := 0
	above := math.MaxInt
	if detach {
		above = 0
	}
	c, err := m.beginCheckpoint(checkpointOptions{cloneAbove: above, copyAbove: above, pause: func() {
		if pauses++; pauses == 3 {
			during(m)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.BeginCheckpoint(); err == nil {
		t.Fatal("a second checkpoint began while one is being written")
	}
	if err := c.write(io.Discard); err != errAbandoned {
		t.Fatalf("write = %v, want errAbandoned", err)
	}
	for _, r := range events { // again after a Reset; ignored otherwise
		m.Apply(r.pool, r.seq, r.events...)
	}
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		t.Fatalf("the next checkpoint: %v", err)
	}
	restored := New()
	if _, err := restored.ReadCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	replay := NewReplay()
	for _, r := range events {
		replay.Apply(r.pool, r.seq, r.events...)
	}
	if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, end, 10); len(diffs) > 0 {
		t.Fatalf("the checkpoint after an abandoned one differs from the replay:\n%s", strings.Join(diffs, "\n"))
	}
}

// A checkpoint of version 3 (written by earlier builds under the read lock
// throughout: no end position) still loads.
func TestCheckpointVersion3(t *testing.T) {
	events, end := history(t, 9, 20, 1500)
	m, replay := New(), NewReplay()
	for _, r := range events {
		m.Apply(r.pool, r.seq, r.events...)
		replay.Apply(r.pool, r.seq, r.events...)
	}
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	v4 := buf.Bytes()
	// Version 3 is version 4 without the end position after the pools.
	d := decoder{b: v4[len(checkpointMagic)+1 : len(v4)-4]}
	d.uvarint() // position
	for n := d.uvarint(); n > 0; n-- {
		d.row(d.str(), func(b []byte) string { return string(b) })
	}
	if d.err != nil {
		t.Fatal(d.err)
	}
	atEnd := len(v4) - 4 - len(d.b)
	d.uvarint() // end
	afterEnd := len(v4) - 4 - len(d.b)
	v3 := slices.Concat(v4[:atEnd], v4[afterEnd:len(v4)-4])
	v3[len(checkpointMagic)] = 3
	v3 = binary.BigEndian.AppendUint32(v3, crc32.Checksum(v3, crc32.MakeTable(crc32.Castagnoli)))
	restored := New()
	if pos, err := restored.ReadCheckpoint(bytes.NewReader(v3)); err != nil || pos != events[len(events)-1].seq {
		t.Fatalf("ReadCheckpoint(version 3) = %d, %v", pos, err)
	}
	if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, end, 10); len(diffs) > 0 {
		t.Fatalf("models from a version 3 checkpoint differ from the replay:\n%s", strings.Join(diffs, "\n"))
	}
}

// TestFuzzyCheckpointConcurrent is TestFuzzyCheckpointReplay with the
// commits applied by another goroutine as fast as it can while the
// checkpoint is written (run it with -race), large pools encoded without
// the lock, and queries going on.
func TestFuzzyCheckpointConcurrent(t *testing.T) {
	defer func(old int) { lazyBytes = old }(lazyBytes)
	lazyBytes = 300
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			events, end := history(t, 100+seed, 60, 5000)
			half := len(events) / 2
			m := New()
			if seed%2 == 1 { // from a checkpoint of the first quarter
				first := New()
				for _, r := range events[:half/2] {
					first.Apply(r.pool, r.seq, r.events...)
				}
				var buf bytes.Buffer
				if _, err := first.WriteCheckpoint(&buf); err != nil {
					t.Fatal(err)
				}
				if _, err := m.ReadCheckpoint(&buf); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range events[:half] {
				m.Apply(r.pool, r.seq, r.events...)
			}
			c, err := m.beginCheckpoint(checkpointOptions{hold: time.Duration(seed%3) * 10 * time.Microsecond, cloneAbove: 3, copyAbove: 500})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for _, r := range events[half:] {
					m.Apply(r.pool, r.seq, r.events...)
				}
			})
			wg.Go(func() {
				for i := range 200 {
					m.Availability.Query(AvailabilityQuery{Limit: 5}, end)
					m.Reservations.Lookup(fmt.Sprint("r", i), end)
				}
			})
			var buf bytes.Buffer
			err = c.write(&buf)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			restored := New()
			if _, err := restored.ReadCheckpoint(&buf); err != nil {
				t.Fatal(err)
			}
			past := 0
			figures, _ := restored.Figures("", MaxLimit, end, nil)
			for _, f := range figures {
				past += b2i(f.Seq > c.position)
			}
			t.Logf("%d of %d pools written past the checkpoint's position", past, len(figures))
			replay := NewReplay()
			for _, r := range events {
				replay.Apply(r.pool, r.seq, r.events...)
				if r.seq > c.position {
					restored.Apply(r.pool, r.seq, r.events...)
				}
			}
			if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, end, 10); len(diffs) > 0 {
				t.Fatalf("checkpoint at %d then the stream after it differs from the replay:\n%s", c.position, strings.Join(diffs, "\n"))
			}
			if got := refoldCheck(t, restored, events, end, nil); len(got) > 0 {
				t.Fatalf("checkpoint then the stream after it: figures differ from a fresh fold: %v", got)
			}
		})
	}
}
