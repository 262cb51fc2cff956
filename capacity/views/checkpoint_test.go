package views

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
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
	restored := New()
	if _, err := restored.ReadCheckpoint(&buf); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b1", "r1", "old"} {
		want, _ := m.Reservations.Lookup(id, at)
		got, _ := restored.Reservations.Lookup(id, at)
		if len(want) != 1 || !reflect.DeepEqual(got, want) {
			t.Errorf("reservation %s after a checkpoint = %+v, want %+v", id, got, want)
		}
	}
}
