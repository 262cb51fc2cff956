package main

import (
	"errors"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

func TestWriteLease(t *testing.T) {
	l := newWriteLease(2 * time.Second)
	t0 := time.Now()
	var ce *capacity.Error
	if err := l.check("a", t0, []string{"b"}); !errors.As(err, &ce) || ce.Code != capacity.EREGION {
		t.Fatalf("a lease never renewed: %v, want region-unavailable", err)
	}
	l.renew("b", t0)
	if err := l.check("a", t0.Add(1900*time.Millisecond), []string{"b"}); err != nil {
		t.Fatalf("within the lease: %v", err)
	}
	if err := l.check("a", t0.Add(2*time.Second), []string{"b"}); err == nil {
		t.Fatal("a lease past its duration still holds")
	}
	l.renew("b", t0.Add(-time.Second)) // an older read does not move it back
	if err := l.check("a", t0.Add(1900*time.Millisecond), []string{"b"}); err != nil {
		t.Fatalf("an older renewal moved the lease back: %v", err)
	}
	if err := l.check("a", t0.Add(time.Second), []string{"b", "c"}); err == nil {
		t.Fatal("a lease holds with peer c never heard from")
	}
	if err := l.check("a", t0.Add(time.Hour), nil); err != nil {
		t.Fatalf("no peer writes anything: the lease must not stop this region: %v", err)
	}
	if err := l.lapsedWhileRunning("a", t0.Add(time.Hour), []string{"b"}); !errors.As(err, &ce) || ce.Code != capacity.EREGION {
		t.Fatalf("lapsed while running: %v, want region-unavailable", err)
	}
	if w := l.takeoverWait(); w <= 2*time.Second {
		t.Fatalf("takeover wait %v, want longer than the lease", w)
	}
	var off *writeLease
	if err := off.check("a", t0, []string{"b"}); err != nil || off.takeoverWait() != 0 {
		t.Fatalf("no lease: check %v, wait %v", err, off.takeoverWait())
	}
}
