package views

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
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
