package capacity_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/capacityd/capacityd/capacity"
)

// frozen is a clone as it was when taken: its snapshot and a copy of every
// reservation's value, to compare it with later.
type frozen struct {
	at     int // events in the history when it was taken
	pool   *capacity.Pool
	snap   []byte
	values map[string]capacity.Reservation
}

func freeze(t *rapid.T, p *capacity.Pool, at int) frozen {
	snap, err := p.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	f := frozen{at: at, pool: p, snap: snap, values: make(map[string]capacity.Reservation, len(p.Reservations))}
	for id, r := range p.Reservations {
		f.values[id] = *r
	}
	return f
}

// TestCloneIsIndependent checks that a clone and its original share
// nothing that changes: Clone shares the *Reservation values (the writer
// hands a clone to the snapshot encoder on another goroutine), so Evolve
// must never change one in place. The original goes on through a random
// history with retirements; every clone taken on the way must still encode
// and hold exactly what it did when taken, and must still decide like a
// replay of the history up to it. A clone that goes on by itself must not
// change the original either.
func TestCloneIsIndependent(t *testing.T) {
	defer capacity.SetRetainFinished(10 * time.Minute)()
	rapid.Check(t, func(t *rapid.T) {
		def := capacity.DefinePool{
			Pool: "p", Region: "ams", Kind: "delivery",
			StartsAt: t0.Add(time.Hour), EndsAt: t0.Add(7 * time.Hour),
			Capacity: rapid.IntRange(0, 20).Draw(t, "capacity"),
		}
		r := &run{t: t, live: &capacity.Pool{}, holds: map[string]capacity.Hold{}}
		var clones []frozen
		now := t0
		for range rapid.IntRange(1, 60).Draw(t, "batches") {
			now = now.Add(time.Duration(rapid.Int64Range(0, int64(3*time.Minute)).Draw(t, "dt")))
			r.batch(now, def)
			switch rapid.IntRange(0, 3).Draw(t, "clone") {
			case 0: // a snapshot's copy, left alone
				clones = append(clones, freeze(t, r.live.Clone(), len(r.history)))
			case 1: // a copy that goes on by itself: the original must not see it
				before := freeze(t, r.live, len(r.history))
				other := &run{t: t, live: r.live.Clone(), history: slices.Clone(r.history), holds: maps.Clone(r.holds), cut: r.cut}
				other.batch(now.Add(time.Minute), def)
				requireUnchanged(t, "original after its clone went on", before)
			}
		}
		for i, c := range clones {
			requireUnchanged(t, fmt.Sprintf("clone %d", i), c)
			if err := samePool(c.pool, r.replay(&capacity.Pool{}, r.history[:c.at], 1)); err != nil {
				t.Fatalf("clone taken after %d events differs from their replay: %v", c.at, err)
			}
		}
	})
}

// requireUnchanged fails unless f's pool still encodes to the same snapshot
// and holds reservations of the same values as when it was frozen.
func requireUnchanged(t *rapid.T, what string, f frozen) {
	t.Helper()
	snap, err := f.pool.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if string(snap) != string(f.snap) {
		t.Fatalf("%s: snapshot changed", what)
	}
	if len(f.pool.Reservations) != len(f.values) {
		t.Fatalf("%s: %d reservations, had %d", what, len(f.pool.Reservations), len(f.values))
	}
	for id, want := range f.values {
		if got := f.pool.Reservations[id]; got == nil || !got.Equal(want) {
			t.Fatalf("%s: reservation %s = %+v, was %+v", what, id, got, want)
		}
	}
}
