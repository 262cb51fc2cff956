package main

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// The write lease (--write-lease D, off by default). Without it a region
// cut off from its peers goes on acknowledging writes until it sees the
// new term, so a takeover during a partition gives a pool two writers for
// as long as the partition lasts (each in its own epoch; the cut-off
// region's tail is set aside when the link heals, and its acks are lost).
// With it:
//
//   - a region writes (and reads its pools strongly) only while every
//     peer that writes pools (the writer of some region, as this region
//     knows the terms) answered within D: a read of a peer's term bucket
//     that started at t renews the lease until t+D. A peer that writes
//     nothing (taken over, fenced) need not answer. Otherwise the answer
//     is 503 region-unavailable; a write whose lease lapsed while it ran
//     is answered 503 too (outcome unknown: it may be in this region's
//     stream, which a takeover elsewhere sets aside).
//   - a takeover raises the epoch and then waits D plus a margin before
//     its first write. By then the old writer has either read the new
//     epoch (and fenced itself) or gone a whole D without hearing from
//     the taker (and stopped writing).
//
// So no two regions acknowledge writes of one pool at the same time,
// whatever the partition, as long as clocks run at about the same rate
// (the margin allows 10%), every region runs with the same D and a
// region's pools are promoted in one region only. The price is CP, not
// AP: while any writing region is silent (down, or cut off), every region
// stops writing after D, until the link heals or an operator promotes
// the silent region's pools elsewhere (which makes it a region that
// writes nothing); and a takeover takes D longer. A handover is not
// affected (the old writer is fenced before the new one writes).

// minWriteLease is the shortest lease: the peers are read every
// termsRefresh, each read bounded by regionProbeTimeout.
const minWriteLease = 2 * time.Second

// leaseMargin is how much longer than the lease a takeover waits.
func leaseMargin(d time.Duration) time.Duration { return d/10 + termsRefresh }

// writeLease keeps when each peer region last answered.
type writeLease struct {
	d time.Duration // 0: off

	mu    sync.Mutex
	heard map[string]time.Time // peer -> start of its last good read
}

func newWriteLease(d time.Duration) *writeLease {
	return &writeLease{d: d, heard: map[string]time.Time{}}
}

// renew records that peer answered a read that started at start.
func (l *writeLease) renew(peer string, start time.Time) {
	if l == nil || l.d == 0 {
		return
	}
	l.mu.Lock()
	if start.After(l.heard[peer]) {
		l.heard[peer] = start
	}
	l.mu.Unlock()
}

// silent returns the peers of mustHear not heard from within the lease.
func (l *writeLease) silent(now time.Time, mustHear []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var silent []string
	for _, p := range mustHear {
		if h, ok := l.heard[p]; !ok || now.Sub(h) >= l.d {
			silent = append(silent, p)
		}
	}
	return silent
}

// check returns nil while the lease holds (every peer in mustHear heard
// from within it), else the 503 that says why.
func (l *writeLease) check(region string, now time.Time, mustHear []string) error {
	if l == nil || l.d == 0 {
		return nil
	}
	silent := l.silent(now, mustHear)
	if len(silent) == 0 {
		return nil
	}
	return &capacity.Error{Code: capacity.EREGION, Region: region, Message: fmt.Sprintf(
		"region %s's write lease lapsed: no answer from region(s) %v within --write-lease %v, so another region may be taking pools over; nothing is written here until they answer (retry, or promote the silent region's pools elsewhere)",
		region, silent, l.d)}
}

// lapsedWhileRunning turns the success of a write that ran past the lease
// into the 503 of an unknown outcome.
func (l *writeLease) lapsedWhileRunning(region string, now time.Time, mustHear []string) error {
	err := l.check(region, now, mustHear)
	if err == nil {
		return nil
	}
	return &capacity.Error{Code: capacity.EREGION, Region: region, Message: fmt.Sprintf(
		"the write may be stored, but the write lease lapsed while it ran (%v): its outcome is unknown here; retry with the same id", err)}
}

// takeoverWait is how long a takeover waits after raising the epoch.
func (l *writeLease) takeoverWait() time.Duration {
	if l == nil || l.d == 0 {
		return 0
	}
	return l.d + leaseMargin(l.d)
}

// leaseCheck checks the write lease against the peers that write pools now.
func (a *app) leaseCheck() error {
	if a.lease == nil {
		return nil
	}
	return a.lease.check(a.cfg.Region, time.Now(), a.writingPeers())
}

// leaseLapsedWhileRunning is leaseCheck after a write that succeeded.
func (a *app) leaseLapsedWhileRunning() error {
	if a.lease == nil {
		return nil
	}
	return a.lease.lapsedWhileRunning(a.cfg.Region, time.Now(), a.writingPeers())
}

// writingPeers returns the peer regions that write some region's pools,
// as this instance knows the terms (a region without a term writes its
// own).
func (a *app) writingPeers() []string {
	a.w.gate.RLock()
	defer a.w.gate.RUnlock()
	var out []string
	for _, r := range append([]string{a.cfg.Region}, a.cfg.PeerRegions...) {
		w := r
		if t, ok := a.w.terms[r]; ok && t.Writer != "" {
			w = t.Writer
		}
		if w != a.cfg.Region && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}
