package views

import (
	"strings"

	"github.com/capacityd/capacityd/capacity"
	"testing"
	"time"
)

// refoldCheck takes the models' figures (every page) after recording
// their position, folds the whole history with a Refold and returns the
// mismatches.
func refoldCheck(t *testing.T, m *Models, events []recorded, at time.Time, doctor func([]PoolFigures)) []FigureMismatch {
	t.Helper()
	position := m.Position()
	var figures []PoolFigures
	for after := ""; ; {
		page, next := m.Figures(after, 7, at, nil)
		figures = append(figures, page...)
		if next == "" {
			break
		}
		after = next
	}
	if doctor != nil {
		doctor(figures)
	}
	r := NewRefold(figures, position)
	for _, e := range events {
		r.Apply(e.pool, e.seq, e.events...)
	}
	got, _ := r.Check(at, nil)
	return got
}

func TestRefoldAgreesWithModelsAndFindsDoctoredFigures(t *testing.T) {
	events, end := history(t, 11, 30, 3000)
	at := end.Add(-time.Minute) // some holds lapsed, some live
	apply := func(m *Models, upTo int, skip int) {
		for i, e := range events[:upTo] {
			if i != skip {
				m.Apply(e.pool, e.seq, e.events...)
			}
		}
	}
	// A pool's last event with events of other pools after it (the
	// models' position covers it), and a hold in the middle of a pool's
	// history.
	lastOf, heldInside := -1, -1
	for i := len(events) / 2; i < len(events)-10 && (lastOf < 0 || heldInside < 0); i++ {
		later := false
		for _, e := range events[i+1:] {
			later = later || e.pool == events[i].pool
		}
		_, held := events[i].events[0].(capacity.Held)
		switch {
		case !later && lastOf < 0:
			lastOf = i
		case later && held && len(events[i].events) == 1 && heldInside < 0:
			heldInside = i
		}
	}
	if lastOf < 0 || heldInside < 0 {
		t.Fatalf("history lacks the events the test needs: %d, %d", lastOf, heldInside)
	}
	cases := []struct {
		name   string
		upTo   int // events the models applied
		skip   int // index of an event the models missed (-1: none)
		doctor func([]PoolFigures)
		want   []string // substrings of the mismatches, in order; none: no mismatch
	}{
		{name: "caught up", upTo: len(events), skip: -1},
		{name: "lagging", upTo: len(events) / 2, skip: -1},
		{name: "held doctored", upTo: len(events), skip: -1,
			doctor: func(f []PoolFigures) { f[3].View.Held++ },
			want:   []string{"held is"}},
		{name: "available and reservations doctored", upTo: len(events), skip: -1,
			doctor: func(f []PoolFigures) { f[0].View.Available--; f[0].Reservations += 2 },
			want:   []string{"available is", "reservations is"}},
		{name: "pool missing", upTo: len(events), skip: -1,
			doctor: func(f []PoolFigures) { f[5] = PoolFigures{Pool: "zz-not-in-the-stream", Seq: 1} },
			want:   []string{"pool is absent", "zz-not-in-the-stream at seq 1: pool is present"}},
		{name: "missed last event of a pool", upTo: len(events), skip: lastOf,
			want: []string{"is missing in the read model"}},
		{name: "missed hold inside a pool's history", upTo: len(events), skip: heldInside,
			want: []string{"reservations is"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := New()
			apply(m, c.upTo, c.skip)
			got := refoldCheck(t, m, events, at, c.doctor)
			if len(c.want) == 0 {
				if len(got) != 0 {
					t.Fatalf("mismatches %v, want none", got)
				}
				return
			}
			var lines []string
			for _, g := range got {
				lines = append(lines, g.String())
			}
			all := strings.Join(lines, "\n")
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("mismatches:\n%s\nwant one containing %q", all, w)
				}
			}
		})
	}
}

// TestRefoldFallsBackToTheHead: a read model ahead of its own copy (a
// fresh mirror still catching up) is a mismatch against that copy alone,
// and none when the pools past the copy are compared with the head.
func TestRefoldFallsBackToTheHead(t *testing.T) {
	events, end := history(t, 5, 20, 1500)
	m := New()
	for _, e := range events {
		m.Apply(e.pool, e.seq, e.events...)
	}
	figures, _ := m.Figures("", MaxLimit, end, nil)
	local, head := NewRefold(figures, m.Position()), NewRefold(figures, m.Position())
	for i, e := range events {
		if i < len(events)/2 {
			local.Apply(e.pool, e.seq, e.events...)
		}
		head.Apply(e.pool, e.seq, e.events...)
	}
	if got, _ := local.Check(end, nil); len(got) == 0 {
		t.Fatalf("a read model ahead of its copy checked against the copy alone: no mismatch, want some")
	}
	got, via := local.Check(end, head)
	if len(got) != 0 || via == 0 {
		t.Fatalf("with the head: mismatches %v, %d pools via the head; want none, some", got, via)
	}
}

// TestRefoldDropsAFencedCommit: the models applied a commit that was then
// removed from the stream (a partial atomic commit fenced at promotion,
// here the last commit of two pools, one of which it defined); after
// Refold of each pool with its remaining history they equal a replay of
// the stream without it, and the fenced sequence delivered again (fetched
// before its removal) changes nothing.
func TestRefoldDropsAFencedCommit(t *testing.T) {
	events, end := history(t, 3, 12, 1200)
	m := New()
	for _, e := range events {
		m.Apply(e.pool, e.seq, e.events...)
	}
	last := events[len(events)-1].seq
	start := epoch.Add(72 * time.Hour)
	fenced := []recorded{
		{pool: events[0].pool, seq: last + 1, events: []capacity.Event{capacity.Held{ReservationID: "ghost", Quantity: 1, TTL: time.Hour, ExpiresAt: end.Add(time.Hour), At: end}}},
		{pool: "new-in-fence", seq: last + 2, events: []capacity.Event{capacity.PoolDefined{Pool: "new-in-fence", Region: "eu", Kind: "delivery", StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 3}}},
	}
	for _, f := range fenced {
		m.Apply(f.pool, f.seq, f.events...)
	}
	for _, f := range fenced {
		var commits []Commit
		for _, e := range events {
			if e.pool == f.pool {
				commits = append(commits, Commit{Seq: e.seq, Events: e.events})
			}
		}
		m.Refold(f.pool, commits, []uint64{f.seq})
		m.Apply(f.pool, f.seq, f.events...) // a late delivery
	}
	replay := NewReplay()
	for _, e := range events {
		replay.Apply(e.pool, e.seq, e.events...)
	}
	replay.Advance(last + 2) // the models' position moved past the fenced commits
	if diffs := replay.Diff(m.Availability, m.Reservations, m.Board, end, 10); len(diffs) != 0 {
		t.Fatalf("after Refold the models differ from the stream:\n%s", strings.Join(diffs, "\n"))
	}
	figures, _ := m.Figures("", MaxLimit, end, nil)
	for _, f := range figures {
		if f.Pool == "new-in-fence" {
			t.Fatalf("a pool defined only by the fenced commit is still reported: %+v", f)
		}
	}
}
