package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams/natstest"
)

// clockFile is one capacityd's clock: a file holding the offset the binary
// adds to its wall clock ($CAPACITY_CLOCK_FILE, re-read every 50 ms).
type clockFile struct {
	t    *testing.T
	path string
}

func newClockFile(t *testing.T, name string) *clockFile {
	c := &clockFile{t: t, path: filepath.Join(t.TempDir(), name)}
	c.Set(0)
	return c
}

// Set writes the offset atomically (rename), so the binary never reads half
// a file.
func (c *clockFile) Set(offset time.Duration) {
	c.t.Helper()
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(offset.String()), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		c.t.Fatal(err)
	}
}

// Env is the environment entry that hands the clock to capacityd.
func (c *clockFile) Env() string { return "CAPACITY_CLOCK_FILE=" + c.path }

// clockSchedule remembers which offsets the test set when, in recorder
// time, to bound when a deadline can have passed on any instance.
type clockSchedule struct {
	rec      *Recorder
	segments []clockSegment // in order; the first starts at 0 with offset 0
}

// clockSegment: from recorder time from on, no clock is ahead by more
// than maxOffset.
type clockSegment struct {
	from      int64
	maxOffset time.Duration
}

// clockLag is how long a binary may go on with an offset after its file
// changed (it re-reads every 50 ms), with room for a loaded machine.
const clockLag = 250 * time.Millisecond

func newClockSchedule(rec *Recorder) *clockSchedule {
	return &clockSchedule{rec: rec, segments: []clockSegment{{0, 0}}}
}

// set writes every clock's offset and records the step.
func (s *clockSchedule) set(clocks []*clockFile, offsets ...time.Duration) {
	now := s.rec.Now()
	prev := s.segments[len(s.segments)-1].maxOffset
	m := offsets[0]
	for i, c := range clocks {
		c.Set(offsets[i])
		m = max(m, offsets[i])
	}
	s.segments = append(s.segments, clockSegment{now, max(m, prev)}, clockSegment{now + int64(clockLag), m})
}

// reaches is the earliest recorder time at which some instance's clock
// could read t.
func (s *clockSchedule) reaches(t time.Time) int64 {
	const slack = 20 * time.Millisecond
	for i, seg := range s.segments {
		x := int64(t.Sub(s.rec.start) - seg.maxOffset - slack)
		x = max(x, seg.from)
		if i == len(s.segments)-1 || x < s.segments[i+1].from {
			return x
		}
	}
	panic("unreachable")
}

// clockSteps are the offsets of instances a and b, one step per traffic
// phase: each clock jumps forward and back by three minutes, then both
// stand still while a steps by seconds, as an NTP correction does.
var clockSteps = [][2]time.Duration{
	{90 * time.Second, -90 * time.Second},
	{-90 * time.Second, 90 * time.Second},
	{2 * time.Second, 0},
	{-3 * time.Second, 90 * time.Second},
	{90 * time.Second, -90 * time.Second},
	{0, 0},
}

// TestFaultClockSkew runs two capacityd on one nats-server whose clocks
// disagree by minutes and jump back and forth while holds with a 2 s TTL
// race confirms, so lapses decide who gets a unit. The promise: no pool is
// ever over capacity, the history is linearizable against a model that
// keeps each pool's recorded time (the latest time its events carry: it
// never goes back, and holds lapse when it reaches their deadlines, in
// deadline order, see model.go), and in that time no hold is confirmed,
// released or expired on the wrong side of its deadline. -soak stretches
// each clock step.
func TestFaultClockSkew(t *testing.T) {
	nats := startNATS(t, 1)
	clockA, clockB := newClockFile(t, "clock-a"), newClockFile(t, "clock-b")
	a := startCapacityd(t, capacitydOpts{Name: "capacityd-a", NATSURL: nats.URLs(), Env: []string{clockA.Env()}})
	b := startCapacityd(t, capacitydOpts{Name: "capacityd-b", NATSURL: nats.URLs(), Env: []string{clockB.Env()}})
	w := DefaultWorkload([]string{a.HTTPURL, b.HTTPURL}, 16)
	w.TTL = "2s"
	w.Hold, w.Confirm, w.Release, w.Read = 45, 30, 5, 20
	rec, tr := startTraffic(t, &w, "local")

	ok0, since := tr.OK(), time.Now()
	run(time.Second)
	t.Logf("rate before the first clock step: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
	var steps []string
	clocks := []*clockFile{clockA, clockB}
	schedule := newClockSchedule(rec)
	for _, step := range clockSteps {
		schedule.set(clocks, step[0], step[1])
		steps = append(steps, fmt.Sprintf("a%+v/b%+v", step[0], step[1]))
		run(phase(1500*time.Millisecond, len(clockSteps)))
	}
	tr.Stop()
	t.Logf("clock steps (a/b offsets, each for %v): %s", phase(1500*time.Millisecond, len(clockSteps)), strings.Join(steps, " "))

	// Move both clocks past every deadline and wait until the stream
	// records every lapse (Expired), so that the service's figures and the
	// stream's replay agree.
	schedule.set(clocks, time.Hour, time.Hour)
	allLapsedBy := rec.Now() + int64(clockLag)
	run(clockLag)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	natstest.CheckFor(t, 45*time.Second, 250*time.Millisecond, func() error {
		gt, err := ReadGroundTruth(ctx, nats.URLs(), "local", 1)
		if err != nil {
			return err
		}
		for pool, f := range gt.Final {
			if f.Held > 0 {
				return fmt.Errorf("pool %s: %d units still held without an Expired event", pool, f.Held)
			}
		}
		return nil
	})
	var expiredRefusals int
	for _, op := range rec.All() {
		if op.Problem == "hold-expired" {
			expiredRefusals++
		}
	}
	t.Logf("confirms refused as hold-expired: %d", expiredRefusals)
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: nats.URLs(), logs: []*proc{a.proc, b.proc, nats.Nodes[0].proc}, allLapsedBy: allLapsedBy, clockReaches: schedule.reaches})
}
