package capacity_test

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/capacityd/capacityd/capacity"
)

// Two writers whose clocks disagree: A (ahead) lets r1 lapse and gives its
// unit to r2; B (behind) then confirms r1, which by B's clock is still live.
// Deciding at B's clock would overbook the pool; the pool's recorded time
// says r1 lapsed, so the confirm must be refused.
func TestSkewedConfirmAfterLapseRelied(t *testing.T) {
	def := slot()
	def.Capacity = 1
	p := given(t, now(def), now(hold("r1", 1, time.Minute)))

	ahead := t0.Add(time.Minute + 30*time.Second) // writer A: 90 s ahead of B
	mustDo(t, p, hold("r2", 1, time.Minute), ahead)

	behind := t0.Add(30 * time.Second) // writer B: r1 looks live
	mustRefuse(t, p, capacity.Confirm{ReservationID: "r1"}, behind, capacity.EEXPIRED)
	if f := p.FiguresAt(p.UpdatedAt); f.Held+f.Confirmed > p.Limit() {
		t.Fatalf("figures %+v over limit %d", f, p.Limit())
	}

	// B's hold is decided at the pool's time, not its own: the deadline
	// counts from the latest recorded event.
	events := mustDo(t, p, capacity.Release{ReservationID: "r2"}, behind)
	if got, want := capacity.EventTime(events[0]), ahead; !got.Equal(want) {
		t.Fatalf("release recorded at %s, want the pool's time %s", got, want)
	}
	events = mustDo(t, p, hold("r3", 1, time.Minute), behind)
	if got, want := events[0].(capacity.Held).ExpiresAt, ahead.Add(time.Minute); !got.Equal(want) {
		t.Fatalf("r3 expires at %s, want %s", got, want)
	}
}

// A clock stepped back does not bring a lapsed hold back to life for the
// same writer either, nor make the sweeper record an expiry before the
// deadline.
func TestClockStepBack(t *testing.T) {
	def := slot()
	def.Capacity = 2
	p := given(t, now(def), now(hold("r1", 2, time.Minute)))
	mustDo(t, p, hold("r2", 2, time.Minute), t0.Add(2*time.Minute))
	mustRefuse(t, p, capacity.Confirm{ReservationID: "r1"}, t0, capacity.EEXPIRED)
	mustRefuse(t, p, hold("r3", 1, time.Minute), t0, capacity.EINSUFFICIENT)
	events := mustDo(t, p, capacity.Expire{}, t0)
	if len(events) != 1 || capacity.ReservationID(events[0]) != "r1" {
		t.Fatalf("expire at a stepped-back clock = %v, want r1 only", events)
	}
}

// Whatever the writers' clocks say, in whatever order their decisions land,
// the pool's recorded time never goes back, no expiry is recorded before its
// hold's deadline, and the pool is never over its limit at any instant at or
// after its recorded time.
func TestSkewedClocksNeverOverbook(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		def := slot()
		def.Capacity = rapid.IntRange(0, 4).Draw(t, "capacity")
		p := &capacity.Pool{}
		if _, err := decideApply(p, def, t0); err != nil {
			t.Fatal(err)
		}
		skews := rapid.SliceOfN(rapid.Int64Range(-int64(2*time.Minute), int64(2*time.Minute)), 2, 4).Draw(t, "skews")
		var ids []string
		real := t0
		var last time.Time
		for i := range rapid.IntRange(1, 60).Draw(t, "steps") {
			real = real.Add(time.Duration(rapid.Int64Range(0, int64(20*time.Second)).Draw(t, "dt")))
			clock := real.Add(time.Duration(rapid.SampledFrom(skews).Draw(t, "writer")))
			var cmd capacity.Command
			switch k := rapid.IntRange(0, 3).Draw(t, "kind"); {
			case k == 0 || len(ids) == 0:
				id := fmt.Sprintf("r%d", i)
				ids = append(ids, id)
				ttl := time.Duration(rapid.IntRange(1, 90).Draw(t, "ttl")) * time.Second
				cmd = hold(id, rapid.IntRange(1, 2).Draw(t, "q"), ttl)
			case k == 1:
				cmd = capacity.Confirm{ReservationID: rapid.SampledFrom(ids).Draw(t, "confirm")}
			case k == 2:
				cmd = capacity.Release{ReservationID: rapid.SampledFrom(ids).Draw(t, "release")}
			default:
				cmd = capacity.Expire{}
			}
			events, _ := decideApply(p, cmd, clock)
			for _, e := range events {
				at := capacity.EventTime(e)
				if at.Before(last) {
					t.Fatalf("%#v recorded at %s, before the pool's latest event at %s", e, at, last)
				}
				last = at
				if x, ok := e.(capacity.Expired); ok && x.At.Before(p.Reservations[x.ReservationID].ExpiresAt) {
					t.Fatalf("%s expired at %s, before its deadline %s", x.ReservationID, x.At, p.Reservations[x.ReservationID].ExpiresAt)
				}
			}
			for _, probe := range []time.Time{p.UpdatedAt, p.UpdatedAt.Add(time.Second), p.UpdatedAt.Add(time.Minute)} {
				if f := p.FiguresAt(probe); f.Held+f.Confirmed > p.Limit() {
					t.Fatalf("after %#v by a writer at %s: figures at %s %+v over limit %d", cmd, clock, probe, f, p.Limit())
				}
			}
		}
	})
}

// decideApply decides cmd at when and evolves p with the events.
func decideApply(p *capacity.Pool, cmd capacity.Command, when time.Time) ([]capacity.Event, error) {
	events, err := capacity.Decide(p, cmd, when)
	for _, e := range events {
		p.Evolve(e, p.Version+1)
	}
	return events, err
}
