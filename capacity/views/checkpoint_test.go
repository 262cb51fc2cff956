package views

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

func TestCheckpointRoundTrip(t *testing.T) {
	events, end := history(t, 21, 40, 6000)
	half := len(events) / 2
	m, replay := New(), NewReplay()
	for _, r := range events[:half] {
		m.Apply(r.pool, r.seq, r.events...)
		replay.Apply(r.pool, r.seq, r.events...)
	}
	var buf bytes.Buffer
	pos, err := m.WriteCheckpoint(&buf)
	if err != nil || pos != events[half-1].seq {
		t.Fatalf("WriteCheckpoint = %d, %v; want %d", pos, err, events[half-1].seq)
	}
	checkpoint := buf.Bytes()

	restored := New()
	feed, stop := restored.Board.Subscribe(t.Context(), 1)
	defer stop()
	if pos, err := restored.ReadCheckpoint(bytes.NewReader(checkpoint)); err != nil || pos != events[half-1].seq {
		t.Fatalf("ReadCheckpoint = %d, %v", pos, err)
	}
	if _, open := <-feed; open {
		t.Fatal("a board subscriber survived a restore")
	}
	if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, end, 10); len(diffs) > 0 {
		t.Fatalf("restored models differ from the replay:\n%s", strings.Join(diffs, "\n"))
	}
	// The restored models go on from the checkpoint: redeliveries of what it
	// holds are ignored, later commits apply.
	for _, r := range events[half-100:] {
		restored.Apply(r.pool, r.seq, r.events...)
	}
	for _, r := range events[half:] {
		replay.Apply(r.pool, r.seq, r.events...)
	}
	for _, now := range []int{0, 1} {
		at := end.Add(-time.Duration(now) * time.Minute)
		if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, at, 10); len(diffs) > 0 {
			t.Fatalf("models restored then fed differ from the replay at %v:\n%s", at, strings.Join(diffs, "\n"))
		}
	}
	// verify's figures (reservation ids indexed per pool included) agree
	// with a fresh fold after a restore too.
	if got := refoldCheck(t, restored, events, end, nil); len(got) > 0 {
		t.Fatalf("restored models' figures differ from a fresh fold: %v", got)
	}
}

func TestCheckpointUnusable(t *testing.T) {
	events, end := history(t, 22, 10, 500)
	m, replay := New(), NewReplay()
	for _, r := range events {
		m.Apply(r.pool, r.seq, r.events...)
		replay.Apply(r.pool, r.seq, r.events...)
	}
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not a checkpoint", []byte("{\"seq\":1}")},
		{"unknown version", flip(len(checkpointMagic))},
		{"truncated", good[:len(good)/2]},
		{"no checksum", good[:len(good)-4]},
		{"flipped byte", flip(len(good) / 3)},
		{"flipped checksum", flip(len(good) - 1)},
		{"trailing bytes", append(bytes.Clone(good), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Models already fed keep their state when a checkpoint fails.
			if _, err := m.ReadCheckpoint(bytes.NewReader(tc.data)); !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("ReadCheckpoint = %v, want ErrCheckpoint", err)
			}
			if diffs := replay.Diff(m.Availability, m.Reservations, m.Board, end, 5); len(diffs) > 0 {
				t.Fatalf("models changed by an unusable checkpoint:\n%s", strings.Join(diffs, "\n"))
			}
		})
	}
}

// A checkpoint keeps every field of a reservation: a booking's id and items,
// the units first held before a partial confirmation, and reservations
// retired to their compact record.
func TestCheckpointKeepsEveryReservationField(t *testing.T) {
	at := time.Date(2030, 5, 1, 8, 0, 0, 0, time.UTC)
	items := []capacity.BookingItem{{Pool: "p1", Quantity: 2}, {Pool: "p2", Quantity: 1}}
	m := New()
	m.Apply("p1", 1, capacity.PoolDefined{Pool: "p1", Region: "r", Kind: "k", StartsAt: at.Add(72 * time.Hour), EndsAt: at.Add(73 * time.Hour), Capacity: 10, DefinedAt: at})
	m.Apply("p1", 2, capacity.Held{ReservationID: "b1", Quantity: 2, TTL: time.Minute, ExpiresAt: at.Add(time.Minute), At: at, Booking: "b1", Items: items})
	m.Apply("p1", 3, capacity.Held{ReservationID: "r1", Quantity: 3, TTL: time.Minute, ExpiresAt: at.Add(time.Minute), At: at},
		capacity.Confirmed{ReservationID: "r1", Quantity: 1, At: at})
	m.Apply("p1", 4, capacity.Held{ReservationID: "old", Quantity: 1, TTL: time.Minute, ExpiresAt: at.Add(time.Minute), At: at},
		capacity.Released{ReservationID: "old", At: at})
	m.Apply("p1", 5, capacity.CapacityChanged{From: 10, To: 11, At: at.Add(capacity.RetainFinished + time.Hour)}) // "old" retires
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	defer func(old int) { lazyBytes = old }(lazyBytes)
	for _, lazyBytes = range []int{math.MaxInt, 0} { // decoded at load, then kept encoded
		restored := New()
		if _, err := restored.ReadCheckpoint(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"b1", "r1", "old"} {
			want, _ := m.Reservations.Lookup(id, at)
			got, _ := restored.Reservations.Lookup(id, at)
			if len(want) != 1 || !reflect.DeepEqual(got, want) {
				t.Errorf("reservation %s after a checkpoint (lazy above %d bytes) = %+v, want %+v", id, lazyBytes, got, want)
			}
		}
	}
}

// A checkpoint loaded lazily (every pool's snapshot kept encoded) answers
// as the eager fold does: queries read the heads, lookups decode a pool
// without changing it under the read lock, a checkpoint of the still
// encoded pools loads again, and events applied afterwards decode the pools
// they touch. Run with -race: lookups and queries go on while events apply.
func TestCheckpointLazy(t *testing.T) {
	events, end := history(t, 23, 30, 5000)
	half := len(events) / 2
	m, replay := New(), NewReplay()
	for _, r := range events[:half] {
		m.Apply(r.pool, r.seq, r.events...)
		replay.Apply(r.pool, r.seq, r.events...)
	}
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	checkpoint := buf.Bytes()
	for _, tc := range []struct {
		name      string
		lazyBytes int
		wantLazy  bool
	}{
		{"every pool encoded", 0, true},
		{"every pool decoded", math.MaxInt, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(old int) { lazyBytes = old }(lazyBytes)
			lazyBytes = tc.lazyBytes
			restored := New()
			if _, err := restored.ReadCheckpoint(bytes.NewReader(checkpoint)); err != nil {
				t.Fatal(err)
			}
			lazy := func(x *Models) int {
				n := 0
				for _, r := range x.pools {
					n += b2i(r.body != nil)
				}
				return n
			}
			if got := lazy(restored); (got == len(restored.pools)) != tc.wantLazy || (got == 0) == tc.wantLazy {
				t.Fatalf("%d of %d pools encoded", got, len(restored.pools))
			}
			before := lazy(restored)
			for _, now := range []time.Time{end, end.Add(-time.Minute), end.Add(time.Hour)} {
				if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, now, 10); len(diffs) > 0 {
					t.Fatalf("loaded models differ from the replay at %v:\n%s", now, strings.Join(diffs, "\n"))
				}
				if got, want := restored.Availability.LapsedPools(now), m.Availability.LapsedPools(now); !slices.Equal(got, want) {
					t.Fatalf("lapsed pools at %v = %v, want %v", now, got, want)
				}
			}
			if got := lazy(restored); got != before {
				t.Fatalf("queries decoded pools in place: %d encoded, was %d", got, before)
			}
			// A checkpoint of pools still encoded loads again.
			buf.Reset()
			if _, err := restored.WriteCheckpoint(&buf); err != nil {
				t.Fatal(err)
			}
			again := New()
			if _, err := again.ReadCheckpoint(&buf); err != nil {
				t.Fatal(err)
			}
			if diffs := replay.Diff(again.Availability, again.Reservations, again.Board, end, 10); len(diffs) > 0 {
				t.Fatalf("models from a checkpoint of encoded pools differ from the replay:\n%s", strings.Join(diffs, "\n"))
			}
			// Events decode what they touch; readers go on meanwhile.
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			for g := range 2 {
				wg.Go(func() {
					for i := 0; ctx.Err() == nil; i++ {
						r := events[(i*7+g)%half]
						for _, e := range r.events {
							if id := capacity.ReservationID(e); id != "" {
								restored.Reservations.Lookup(id, end)
							}
						}
						restored.Availability.Query(AvailabilityQuery{Limit: 5}, end)
						restored.Board.Cells("", "", "")
					}
				})
			}
			for _, r := range events[half-50:] {
				restored.Apply(r.pool, r.seq, r.events...)
			}
			cancel()
			wg.Wait()
			replay := NewReplay()
			for _, r := range events {
				replay.Apply(r.pool, r.seq, r.events...)
			}
			if diffs := replay.Diff(restored.Availability, restored.Reservations, restored.Board, end, 10); len(diffs) > 0 {
				t.Fatalf("loaded models fed the rest differ from the replay:\n%s", strings.Join(diffs, "\n"))
			}
			if got := refoldCheck(t, restored, events, end, nil); len(got) > 0 {
				t.Fatalf("loaded models' figures differ from a fresh fold: %v", got)
			}
		})
	}
}

// failAtEnd is a reader of data, sized (Len), that fails where data ends, as
// the object store's reader does when the object's digest does not match.
type failAtEnd struct {
	r   *bytes.Reader
	err error
}

func (f *failAtEnd) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func (f *failAtEnd) Len() int { return f.r.Len() }

// A checkpoint read into a buffer of its announced size is still read to
// its end, and an error there (a digest mismatch) refuses it.
func TestCheckpointErrorAtEnd(t *testing.T) {
	m := New()
	m.Apply("p1", 1, capacity.PoolDefined{Pool: "p1", Region: "r", Kind: "k", StartsAt: epoch, EndsAt: epoch.Add(time.Hour), Capacity: 1, DefinedAt: epoch})
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	digest := errors.New("digest mismatch")
	if _, err := New().ReadCheckpoint(&failAtEnd{r: bytes.NewReader(buf.Bytes()), err: digest}); !errors.Is(err, digest) {
		t.Fatalf("ReadCheckpoint = %v, want the reader's error at the end", err)
	}
	if pos, err := New().ReadCheckpoint(&failAtEnd{r: bytes.NewReader(buf.Bytes()), err: io.EOF}); err != nil || pos != 1 {
		t.Fatalf("ReadCheckpoint = %d, %v", pos, err)
	}
}

// A pool whose definition names another id than its subject's keeps that
// id through a checkpoint, loaded eagerly or lazily.
func TestCheckpointPoolIDOtherThanKey(t *testing.T) {
	m := New()
	m.Apply("subject", 1, capacity.PoolDefined{Pool: "named", Region: "r", Kind: "k", StartsAt: epoch, EndsAt: epoch.Add(time.Hour), Capacity: 3, DefinedAt: epoch})
	want, _ := m.Availability.Query(AvailabilityQuery{}, epoch)
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	defer func(old int) { lazyBytes = old }(lazyBytes)
	for _, lazyBytes = range []int{math.MaxInt, 0} {
		restored := New()
		if _, err := restored.ReadCheckpoint(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatal(err)
		}
		got, _ := restored.Availability.Query(AvailabilityQuery{}, epoch)
		if !reflect.DeepEqual(got.Pools, want.Pools) || len(got.Pools) != 1 || got.Pools[0].ID != "named" {
			t.Fatalf("lazy above %d bytes: pools %+v, want %+v", lazyBytes, got.Pools, want.Pools)
		}
	}
}

// TestCheckpointBodyThatDoesNotDecode: a pool kept encoded whose bytes do
// not decode when an event touches it (a bug: the checkpoint's CRC passed)
// leaves the models Broken instead of panicking; the event is not applied,
// no checkpoint of them is written, and a Reset (the rebuild) clears it.
func TestCheckpointBodyThatDoesNotDecode(t *testing.T) {
	events, _ := history(t, 7, 4, 400)
	m := New()
	for _, r := range events {
		m.Apply(r.pool, r.seq, r.events...)
	}
	var buf bytes.Buffer
	if _, err := m.WriteCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	defer func(old int) { lazyBytes = old }(lazyBytes)
	lazyBytes = 0
	restored := New()
	if _, err := restored.ReadCheckpoint(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	r := restored.pools[last.pool]
	if r == nil || r.body == nil {
		t.Fatalf("pool %s not kept encoded", last.pool)
	}
	r.body.raw = r.body.raw[:len(r.body.raw)/2] // what a bug in the encoder could leave
	version := r.lastSeq
	restored.Apply(last.pool, last.seq+1000, last.events...)
	err := restored.Broken()
	if err == nil || !strings.Contains(err.Error(), last.pool) {
		t.Fatalf("Broken() = %v, want the error naming %s", err, last.pool)
	}
	if got := restored.pools[last.pool].lastSeq; got != version {
		t.Fatalf("the broken pool's last sequence moved to %d from %d", got, version)
	}
	if _, err := restored.WriteCheckpoint(io.Discard); err == nil {
		t.Fatal("a checkpoint of broken models was written")
	}
	restored.Reset()
	if err := restored.Broken(); err != nil {
		t.Fatalf("after Reset, Broken() = %v", err)
	}
}
