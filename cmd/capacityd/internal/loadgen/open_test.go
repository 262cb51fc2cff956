package loadgen

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunOpenSendsAtLeastOne: a rate too low for one request in the
// window (a maximum measured during a stall) still sends the request due at
// the start, so the open-loop row has a figure instead of none.
func TestRunOpenSendsAtLeastOne(t *testing.T) {
	var calls atomic.Int64
	res := RunOpen(context.Background(), OpenConfig{Name: "slow", Rate: 1, Workers: 4, Duration: 100 * time.Millisecond},
		func(context.Context, int) Outcome {
			calls.Add(1)
			return Outcome{Op: "hold", Status: 201}
		})
	if res.Sent != 1 || calls.Load() != 1 || res.OK != 1 {
		t.Fatalf("sent %d, called %d, ok %d: want one request at the start", res.Sent, calls.Load(), res.OK)
	}
}

// TestFigureGC: a window's GC figure is its cycles, their CPU and that CPU's
// share of the process's CPU in the window; none without a cycle.
func TestFigureGC(t *testing.T) {
	f := FigureOf(Result{Elapsed: 2 * time.Second, CPU: 1, CPUKnown: true, GCCycles: 3, GCCPUSec: 0.5}, "always")
	if f.GC == nil || f.GC.Cycles != 3 || f.GC.CPUSec != 0.5 || f.GC.Share == nil || *f.GC.Share != 0.25 {
		t.Fatalf("GC = %+v", f.GC)
	}
	if got, want := f.GC.String(), "gc 3 cycles, 0.50 CPU-s (25% of the process's CPU)"; got != want {
		t.Fatalf("GC line = %q, want %q", got, want)
	}
	if f := FigureOf(Result{Elapsed: time.Second}, ""); f.GC != nil {
		t.Fatalf("GC without a cycle = %+v, want none", f.GC)
	}
}

// TestRunOpenWakeLate: workers that sleep until a send is due record how
// late they woke, and the figure reports it.
func TestRunOpenWakeLate(t *testing.T) {
	res := RunOpen(context.Background(), OpenConfig{Name: "paced", Rate: 200, Workers: 2, Duration: 100 * time.Millisecond},
		func(context.Context, int) Outcome { return Outcome{Op: "hold", Status: 201} })
	if res.WakeLate == nil || res.WakeLate.TotalCount() == 0 || res.WakeLate.TotalCount() > res.Sent {
		t.Fatalf("sent %d, woke late recorded %v", res.Sent, res.WakeLate)
	}
	f := OpenFigureOf(res, 0.5)
	if f.WakeLateMS == nil || !strings.Contains(f.String(), "generator woke late p99") {
		t.Fatalf("figure %q, wake late %+v", f.String(), f.WakeLateMS)
	}
}
