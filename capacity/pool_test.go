package capacity_test

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// A lapsed hold stops counting at its deadline, before any Expire command.
func TestLapsedHoldFreesCapacity(t *testing.T) {
	p := given(t, now(slot()), now(hold("r1", 6, time.Minute)), at(30*time.Second, hold("r2", 4, time.Hour)))

	mustRefuse(t, p, hold("r3", 6, time.Hour), t0.Add(59*time.Second), capacity.EINSUFFICIENT)
	requireEqual(t, "lapsed before deadline", p.LapsedHolds(t0.Add(time.Minute-1)), []string(nil))
	requireEqual(t, "lapsed at deadline", p.LapsedHolds(t0.Add(time.Minute)), []string{"r1"})
	if got, ok := p.NextDeadline(); !ok || !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("NextDeadline = %v, %v; want %v", got, ok, t0.Add(time.Minute))
	}
	if got, want := p.Reservations["r1"].StatusAt(t0.Add(time.Minute)), capacity.StatusExpired; got != want {
		t.Fatalf("StatusAt deadline = %v, want %v", got, want)
	}
	if got, want := p.Reservations["r1"].StatusAt(t0.Add(time.Minute-1)), capacity.StatusHeld; got != want {
		t.Fatalf("StatusAt before deadline = %v, want %v", got, want)
	}

	mustDo(t, p, hold("r3", 6, time.Hour), t0.Add(time.Minute))
	requireEqual(t, "figures", p.FiguresAt(t0.Add(time.Minute)), capacity.Figures{Held: 10, Available: 0})
	// The sweeper writes r1 down later; that changes no figure.
	mustDo(t, p, capacity.Expire{}, t0.Add(2*time.Minute))
	requireEqual(t, "figures after Expired", p.FiguresAt(t0.Add(2*time.Minute)), capacity.Figures{Held: 10, Available: 0})
	if got, want := p.Reservations["r1"].Status, capacity.StatusExpired; got != want {
		t.Fatalf("r1 status = %v, want %v", got, want)
	}
	if got, ok := p.NextDeadline(); !ok || !got.Equal(t0.Add(30*time.Second+time.Hour)) {
		t.Fatalf("NextDeadline = %v, %v; want r2's", got, ok)
	}
}

// The lapse memo caches lapsed units for a span of time; each case builds a
// state where a memo that outlived its span or its state would answer wrong.
func TestLapseMemoNeverStale(t *testing.T) {
	t.Run("rejections then a lapse", func(t *testing.T) {
		p := given(t, now(slot()), now(hold("r1", 10, time.Minute)))
		for d := time.Duration(0); d < time.Minute; d += 7 * time.Second {
			mustRefuse(t, p, hold("r2", 1, time.Hour), t0.Add(d), capacity.EINSUFFICIENT)
		}
		mustRefuse(t, p, hold("r2", 1, time.Hour), t0.Add(time.Minute-1), capacity.EINSUFFICIENT)
		mustDo(t, p, hold("r2", 10, time.Hour), t0.Add(time.Minute))
		mustRefuse(t, p, hold("r3", 1, time.Hour), t0.Add(time.Minute), capacity.EINSUFFICIENT)
	})
	t.Run("earlier now after a later one", func(t *testing.T) {
		p := given(t, now(slot()), now(hold("r1", 10, time.Minute)))
		requireEqual(t, "later", p.FiguresAt(t0.Add(time.Hour)), capacity.Figures{Available: 10})
		mustRefuse(t, p, hold("r2", 1, time.Hour), t0.Add(30*time.Second), capacity.EINSUFFICIENT)
		requireEqual(t, "earlier", p.FiguresAt(t0.Add(30*time.Second)), capacity.Figures{Held: 10, Available: 0})
		requireEqual(t, "later again", p.FiguresAt(t0.Add(time.Hour)), capacity.Figures{Available: 10})
	})
	t.Run("a new hold lapsing before the memo's end", func(t *testing.T) {
		// With no live hold the memo holds for a century; a new short
		// hold must end that.
		p := given(t, now(slot()), now(hold("r1", 5, time.Minute)))
		requireEqual(t, "figures", p.FiguresAt(t0.Add(2*time.Minute)), capacity.Figures{Available: 10})
		mustDo(t, p, hold("r2", 10, time.Minute), t0.Add(2*time.Minute))
		mustRefuse(t, p, hold("r3", 1, time.Hour), t0.Add(2*time.Minute), capacity.EINSUFFICIENT)
		mustDo(t, p, hold("r3", 10, time.Hour), t0.Add(3*time.Minute))
	})
	t.Run("an Expired event for a lapsed hold", func(t *testing.T) {
		// Lapsed units are subtracted from held units; once Expired moves
		// them out of held, a memo still subtracting them would overbook.
		p := given(t, now(slot()), now(hold("r1", 5, time.Minute)), now(hold("r2", 5, time.Hour)))
		requireEqual(t, "figures", p.FiguresAt(t0.Add(2*time.Minute)), capacity.Figures{Held: 5, Available: 5})
		mustDo(t, p, capacity.Expire{}, t0.Add(2*time.Minute))
		mustDo(t, p, hold("r3", 5, time.Hour), t0.Add(2*time.Minute))
		mustRefuse(t, p, hold("r4", 1, time.Hour), t0.Add(2*time.Minute), capacity.EINSUFFICIENT)
	})
	t.Run("a confirm of a live hold", func(t *testing.T) {
		p := given(t, now(slot()), now(hold("r1", 5, time.Minute)), now(hold("r2", 5, time.Hour)))
		mustRefuse(t, p, hold("r3", 1, time.Hour), t0.Add(30*time.Second), capacity.EINSUFFICIENT)
		mustDo(t, p, capacity.Confirm{ReservationID: "r1"}, t0.Add(30*time.Second))
		// r1 no longer lapses: still full after its deadline.
		mustRefuse(t, p, hold("r3", 1, time.Hour), t0.Add(2*time.Minute), capacity.EINSUFFICIENT)
	})
	t.Run("a clone", func(t *testing.T) {
		p := given(t, now(slot()), now(hold("r1", 10, time.Minute)))
		mustRefuse(t, p, hold("r2", 1, time.Hour), t0, capacity.EINSUFFICIENT)
		c := p.Clone()
		mustApply(t, c, capacity.Released{ReservationID: "r1", At: t0})
		mustDo(t, c, hold("r2", 10, time.Hour), t0)
		mustRefuse(t, p, hold("r2", 1, time.Hour), t0, capacity.EINSUFFICIENT)
		requireEqual(t, "original", p.FiguresAt(t0), capacity.Figures{Held: 10})
	})
}

func TestSnapshot(t *testing.T) {
	d := slot()
	d.Overbook = 1
	p := given(t, now(d),
		now(hold("r1", 3, time.Minute)), now(hold("r2", 2, time.Hour)), now(hold("r3", 1, time.Hour)),
		now(hold("r4", 1, time.Minute)),
		now(capacity.Confirm{ReservationID: "r2"}), now(capacity.Release{ReservationID: "r3"}),
		at(90*time.Second, hold("r5", 1, 5*time.Minute)),
		at(2*time.Minute, capacity.Expire{}), at(2*time.Minute, capacity.ChangePool{Capacity: ptr(4), Status: capacity.Closed}),
	)
	q := snapshotRoundTrip(t, p)
	requireSamePool(t, q, p)
	requireEqual(t, "figures", q.FiguresAt(t0.Add(2*time.Minute)), capacity.Figures{Held: 1, Confirmed: 2, Available: 2})

	// Both go on alike.
	for _, pool := range []*capacity.Pool{p, q} {
		mustDo(t, pool, capacity.ChangePool{Status: capacity.Open}, t0.Add(3*time.Minute))
		mustDo(t, pool, hold("r6", 2, time.Minute), t0.Add(3*time.Minute))
		mustRefuse(t, pool, hold("r7", 1, time.Minute), t0.Add(3*time.Minute), capacity.EINSUFFICIENT)
	}
	requireSamePool(t, q, p)

	for _, bad := range []string{`{`, `{"reservations":{"r1":null}}`, `[]`, `{"capacity":"ten"}`} {
		if _, err := capacity.UnmarshalSnapshot([]byte(bad)); capacity.ErrorCode(err) != capacity.EINVALID {
			t.Errorf("UnmarshalSnapshot(%s) = %v, want %s", bad, err, capacity.EINVALID)
		}
	}
}

func snapshotRoundTrip(t testing.TB, p *capacity.Pool) *capacity.Pool {
	t.Helper()
	data, err := p.MarshalSnapshot()
	if err != nil {
		t.Fatalf("MarshalSnapshot: %v", err)
	}
	q, err := capacity.UnmarshalSnapshot(data)
	if err != nil {
		t.Fatalf("UnmarshalSnapshot: %v", err)
	}
	return q
}

// requireSamePool fails unless got and want are the same pool (samePool).
func requireSamePool(t testing.TB, got, want *capacity.Pool) {
	t.Helper()
	if err := samePool(got, want); err != nil {
		t.Fatal(err)
	}
}

// samePool reports how got differs from want: in its snapshot, in its
// reservations to the last bit, or in the derived answers (figures, lapsed
// holds, next deadline) at every instant that matters. Asking at instants
// out of order also exercises the lapse memo, and the figures are checked
// against a model that scans the reservations.
func samePool(got, want *capacity.Pool) error {
	// Clones, because a pool never defined has no map of reservations and
	// a snapshot of it has an empty one.
	gs, err := got.Clone().MarshalSnapshot()
	if err != nil {
		return err
	}
	ws, err := want.Clone().MarshalSnapshot()
	if err != nil {
		return err
	}
	if string(gs) != string(ws) {
		return fmt.Errorf("snapshot =\n%s\nwant\n%s", gs, ws)
	}
	if len(got.Reservations)+len(want.Reservations) > 0 && !reflect.DeepEqual(got.Reservations, want.Reservations) {
		return fmt.Errorf("reservations differ in memory though not in JSON (zone or monotonic clock?)")
	}
	for _, at := range probeTimes(got, want) {
		g, w, m := got.FiguresAt(at), want.FiguresAt(at), modelFigures(want, at)
		if g != w || w != m {
			return fmt.Errorf("figures at %s = %+v, want %+v (model %+v)", at, g, w, m)
		}
		if g, w := got.LapsedHolds(at), want.LapsedHolds(at); !slices.Equal(g, w) {
			return fmt.Errorf("lapsed holds at %s = %v, want %v", at, g, w)
		}
	}
	gd, gok := got.NextDeadline()
	wd, wok := want.NextDeadline()
	if gok != wok || !gd.Equal(wd) {
		return fmt.Errorf("NextDeadline = %v, %v; want %v, %v", gd, gok, wd, wok)
	}
	return nil
}

// probeTimes returns, shuffled by map order, the instants around every
// deadline of both pools.
func probeTimes(pools ...*capacity.Pool) []time.Time {
	set := map[time.Time]bool{t0.Add(-time.Hour): true, t0.Add(1000 * time.Hour): true}
	for _, p := range pools {
		for _, r := range p.Reservations {
			for _, d := range []time.Duration{-1, 0, 1} {
				set[r.ExpiresAt.UTC().Add(d)] = true
			}
		}
	}
	times := slices.Collect(maps.Keys(set))
	// Latest first, then the rest: a memo filled late must not answer early.
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return append(times, slices.Collect(maps.Keys(set))...)
}

// modelFigures computes a pool's figures the slow, obvious way.
func modelFigures(p *capacity.Pool, at time.Time) capacity.Figures {
	var f capacity.Figures
	for _, r := range p.Reservations {
		switch {
		case r.Status == capacity.StatusHeld && at.Before(r.ExpiresAt):
			f.Held += r.Quantity
		case r.Status == capacity.StatusConfirmed:
			f.Confirmed += r.Quantity
		}
	}
	f.Available = p.Limit() - f.Held - f.Confirmed
	f.OverCapacity = f.Available < 0
	return f
}
