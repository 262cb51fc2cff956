package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOffsetClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	now := newClock(path)
	if d := time.Until(now()); d < -time.Second || d > time.Second {
		t.Fatalf("no file: offset %v, want about 0", d)
	}
	if err := os.WriteFile(path, []byte("90s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Until(now()) < 80*time.Second {
		if time.Now().After(deadline) {
			t.Fatalf("offset not picked up: clock at %v from now", time.Until(now()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(path, []byte("not a duration"), 0o644); err != nil {
		t.Fatal(err)
	}
	for time.Until(now()) > time.Second {
		if time.Now().After(deadline) {
			t.Fatalf("unparsable file: clock still %v from now, want offset 0", time.Until(now()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
