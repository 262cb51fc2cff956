package views

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

var epoch = time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)

// recorded is one event of a generated history.
type recorded struct {
	pool   string
	seq    uint64
	events []capacity.Event // one commit: every event shares seq
}

// history decides n random commands over the given number of pools with a
// clock that moves forward, the way the write side would, and returns the
// events with sequences and the clock's final time.
func history(t testing.TB, seed uint64, npools, n int) ([]recorded, time.Time) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	state := make(map[string]*capacity.Pool)
	now := epoch
	var out []recorded
	var seq uint64
	for range n {
		id := fmt.Sprintf("p%03d", rng.IntN(npools))
		p := state[id]
		if p == nil {
			p = &capacity.Pool{}
			state[id] = p
		}
		now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		var cmd capacity.Command
		rid := fmt.Sprintf("r%d", rng.IntN(400))
		switch k := rng.IntN(100); {
		case !p.Defined():
			slot := epoch.Add(24*time.Hour + time.Duration(rng.IntN(6))*time.Hour + time.Duration(rng.IntN(2))*24*time.Hour)
			cmd = capacity.DefinePool{Pool: id, Region: []string{"eu", "us"}[rng.IntN(2)], Kind: []string{"delivery", "picking"}[rng.IntN(2)],
				StartsAt: slot, EndsAt: slot.Add(time.Hour), Capacity: 5 + rng.IntN(20), Overbook: rng.IntN(3)}
		case k < 50:
			cmd = capacity.Hold{ReservationID: rid, Quantity: 1 + rng.IntN(3), TTL: time.Duration(1+rng.IntN(120)) * time.Second}
		case k < 70:
			cmd = capacity.Confirm{ReservationID: rid}
		case k < 80:
			cmd = capacity.Release{ReservationID: rid}
		case k < 88:
			cmd = capacity.Expire{}
		case k < 94:
			c := rng.IntN(25)
			cmd = capacity.ChangePool{Capacity: &c, Status: []capacity.Status{"", capacity.Open, capacity.Closed}[rng.IntN(3)]}
		default:
			cmd = capacity.ChangePool{Status: []capacity.Status{capacity.Open, capacity.Closed}[rng.IntN(2)]}
		}
		events, err := capacity.Decide(p, cmd, now)
		if err != nil {
			continue
		}
		if len(events) == 0 {
			continue
		}
		seq++
		for _, e := range events {
			p.Evolve(e, seq)
		}
		out = append(out, recorded{pool: id, seq: seq, events: events})
	}
	return out, now
}

func TestModelsEqualReplayWithRedelivery(t *testing.T) {
	events, end := history(t, 7, 40, 8000)
	a, res, b, replay := NewAvailability(), NewReservations(), NewBoard(), NewReplay()
	rng := rand.New(rand.NewPCG(3, 4))
	for i, r := range events {
		replay.Apply(r.pool, r.seq, r.events...)
		a.Apply(r.pool, r.seq, r.events...)
		res.Apply(r.pool, r.seq, r.events...)
		b.Apply(r.pool, r.seq, r.events...)
		if i > 0 && rng.IntN(10) == 0 { // redeliver an earlier event: must change nothing
			old := events[rng.IntN(i)]
			a.Apply(old.pool, old.seq, old.events...)
			res.Apply(old.pool, old.seq, old.events...)
			b.Apply(old.pool, old.seq, old.events...)
		}
	}
	for _, at := range []time.Time{end, end.Add(-time.Minute), end.Add(time.Hour)} {
		if diffs := replay.Diff(a, res, b, at, 10); len(diffs) > 0 {
			t.Fatalf("models differ from replay at %v:\n%v", at, diffs)
		}
	}
}

func TestAvailabilityQuery(t *testing.T) {
	a := NewAvailability()
	day := epoch.Add(24 * time.Hour)
	var seq uint64
	define := func(id, region, kind string, start time.Time) {
		seq++
		a.Apply(id, seq, capacity.PoolDefined{Pool: id, Region: region, Kind: kind, StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 10})
	}
	for i := range 30 {
		define(fmt.Sprintf("a%02d", i), "eu", "delivery", day.Add(time.Duration(i%10)*time.Hour))
	}
	define("other-region", "us", "delivery", day)
	define("other-kind", "eu", "picking", day)
	define("next-day", "eu", "delivery", day.Add(24*time.Hour))
	seq++
	a.Apply("a00", seq, capacity.Held{ReservationID: "r1", Quantity: 4, TTL: time.Minute, ExpiresAt: epoch.Add(time.Minute), At: epoch})
	seq++
	a.Apply("a00", seq, capacity.Held{ReservationID: "r2", Quantity: 3, TTL: 2 * time.Minute, ExpiresAt: epoch.Add(2 * time.Minute), At: epoch})

	q := AvailabilityQuery{Region: "eu", Kind: "delivery", From: day, To: day.Add(24 * time.Hour), Limit: 7}
	var got []string
	var pages int
	for {
		page, err := a.Query(q, epoch)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := page.Position, seq; got != want {
			t.Fatalf("position = %d, want %d", got, want)
		}
		pages++
		for _, v := range page.Pools {
			got = append(got, v.ID)
		}
		if q.Cursor = page.Next; q.Cursor == "" {
			break
		}
	}
	if len(got) != 30 || pages != 5 {
		t.Fatalf("got %d pools in %d pages, want 30 in 5: %v", len(got), pages, got)
	}
	if got[0] != "a00" || got[1] != "a10" || got[2] != "a20" || got[3] != "a01" {
		t.Fatalf("order = %v, want by start then id", got[:4])
	}
	for _, tc := range []struct {
		at             time.Time
		held, avail    int
		wantOverCapacy bool
	}{
		{epoch, 7, 3, false},
		{epoch.Add(time.Minute), 3, 7, false}, // r1 lapsed at its deadline, before any Expired event
		{epoch.Add(2 * time.Minute), 0, 10, false},
		{epoch.Add(30 * time.Second), 7, 3, false},
	} {
		v, _, ok := a.Pool("a00", tc.at)
		if !ok || v.Held != tc.held || v.Available != tc.avail || v.OverCapacity != tc.wantOverCapacy {
			t.Errorf("at %v: pool = %+v, want held %d available %d", tc.at, v, tc.held, tc.avail)
		}
	}
	if _, err := a.Query(AvailabilityQuery{Cursor: "!!"}, epoch); capacity.ErrorCode(err) != capacity.EINVALID {
		t.Fatalf("bad cursor: err = %v, want EINVALID", err)
	}
}

func TestBoardFeed(t *testing.T) {
	events, _ := history(t, 11, 20, 3000)
	b := NewBoard()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed, stop := b.Subscribe(ctx, len(events)*2)
	defer stop()
	slow, stopSlow := b.Subscribe(ctx, 1)
	defer stopSlow()
	for _, r := range events {
		b.Apply(r.pool, r.seq, r.events...)
	}
	stop()
	last := make(map[string]BoardChange)
	var prev uint64
	for c := range feed {
		if c.Seq < prev {
			t.Fatalf("change seq %d after %d", c.Seq, prev)
		}
		prev = c.Seq
		last[c.Cell.Region+c.Cell.Kind+c.Cell.Slot.String()] = c
	}
	cells, pos := b.Cells("", "", "")
	if pos != events[len(events)-1].seq {
		t.Fatalf("position = %d, want %d", pos, events[len(events)-1].seq)
	}
	if len(last) != len(cells) {
		t.Fatalf("feed touched %d cells, board has %d", len(last), len(cells))
	}
	for _, c := range cells {
		if got := last[c.Region+c.Kind+c.Slot.String()].Cell; got != c {
			t.Fatalf("last change of cell = %+v, want %+v", got, c)
		}
	}
	n := 0
	for range slow { // dropped: closed after its buffer filled, without blocking Apply
		n++
	}
	if n != 1 {
		t.Fatalf("slow subscriber got %d changes, want 1 then a closed channel", n)
	}
	byDay, _ := b.Cells("eu", "", cells[0].Day)
	for _, c := range byDay {
		if c.Region != "eu" || c.Day != cells[0].Day {
			t.Fatalf("Cells(eu, %s) returned %+v", cells[0].Day, c)
		}
	}
}

func TestLapsedPools(t *testing.T) {
	a := NewAvailability()
	t0 := time.Date(2027, 1, 1, 8, 0, 0, 0, time.UTC)
	def := func(id string) capacity.Event {
		return capacity.PoolDefined{Pool: id, Region: "r", Kind: "k", StartsAt: t0.Add(24 * time.Hour), EndsAt: t0.Add(25 * time.Hour), Capacity: 10, DefinedAt: t0}
	}
	a.Apply("p1", 1, def("p1"), capacity.Held{ReservationID: "a", Quantity: 1, TTL: time.Minute, ExpiresAt: t0.Add(time.Minute), At: t0})
	a.Apply("p2", 2, def("p2"), capacity.Held{ReservationID: "b", Quantity: 1, TTL: time.Hour, ExpiresAt: t0.Add(time.Hour), At: t0})
	a.Apply("p3", 3, def("p3"))
	if got := a.LapsedPools(t0.Add(30 * time.Second)); len(got) != 0 {
		t.Fatalf("lapsed pools before any deadline = %v", got)
	}
	if got := a.LapsedPools(t0.Add(2 * time.Minute)); !slices.Equal(got, []string{"p1"}) {
		t.Fatalf("lapsed pools after p1's deadline = %v, want [p1]", got)
	}
	a.Apply("p1", 4, capacity.Expired{ReservationID: "a", At: t0.Add(2 * time.Minute)})
	if got := a.LapsedPools(t0.Add(2 * time.Hour)); !slices.Equal(got, []string{"p2"}) {
		t.Fatalf("lapsed pools once p1's hold expired = %v, want [p2]", got)
	}
	// The same from models started from a checkpoint of these.
	var buf bytes.Buffer
	if _, err := a.m.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	restored := New()
	if _, err := restored.ReadCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	if got := restored.Availability.LapsedPools(t0.Add(2 * time.Hour)); !slices.Equal(got, []string{"p2"}) {
		t.Fatalf("lapsed pools after a checkpoint = %v, want [p2]", got)
	}
}

// TestPoolsByID checks the id index keeps every pool of an id once, sorted,
// as the id moves from the one-pool map to the several-pools one.
func TestPoolsByID(t *testing.T) {
	x := newPoolsByID(0)
	for _, add := range [][2]string{{"r1", "p2"}, {"r1", "p2"}, {"r2", "p1"}, {"r1", "p1"}, {"r1", "p3"}, {"r1", "p1"}} {
		x.add(add[0], add[1])
	}
	if got, want := x.pools("r1"), []string{"p1", "p2", "p3"}; !slices.Equal(got, want) {
		t.Fatalf("pools(r1) = %v, want %v", got, want)
	}
	if got, want := x.pools("r2"), []string{"p1"}; !slices.Equal(got, want) {
		t.Fatalf("pools(r2) = %v, want %v", got, want)
	}
	if got := x.pools("r3"); len(got) != 0 {
		t.Fatalf("pools(r3) = %v, want none", got)
	}
	if n := x.count(); n != 4 {
		t.Fatalf("count = %d, want 4", n)
	}
}
