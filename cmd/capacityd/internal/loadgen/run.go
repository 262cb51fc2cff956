// Package loadgen drives load at capacityd and at reference ceilings and
// measures it: a fixed number of closed-loop clients, a warmup whose results
// are dropped, then a measured window with latencies in an HDR histogram.
//
// It is the engine of `capacityd bench`; the command wires services and
// flags around it. Every figure it reports comes from the same runner, the
// same HTTP client settings and the same concurrency, so the service and its
// ceilings can be compared as ratios.
//
// It reaches capacityd over HTTP only, as a client of docs/API.md, and
// imports nothing of the service: the request and answer shapes it encodes
// are its own copies on purpose.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds between these bounds, to three
// significant figures.
const (
	minLatencyMicros = 1
	maxLatencyMicros = int64(60 * time.Second / time.Microsecond)
)

// RunConfig says how to drive one load: how many clients for how long.
type RunConfig struct {
	Name     string        // shown in progress lines
	Clients  int           // concurrent closed-loop clients
	Warmup   time.Duration // run but not measured
	Duration time.Duration // measured
	Progress io.Writer     // ops/s once a second while running; nil for quiet
	// ProgressLines writes a plain progress line every few seconds instead
	// of rewriting one terminal line every second (for logs and pipes).
	ProgressLines bool
	// AtStart and AtEnd, when set, are called as the measured window opens
	// and closes, e.g. to read the service's metrics.
	AtStart, AtEnd func()
}

// Op performs one operation as client w (0 <= w < Clients) and says how it
// went. Ops of one client are never concurrent, so per-client state indexed
// by w needs no lock.
type Op func(ctx context.Context, w int) Outcome

// Outcome is how one operation went.
type Outcome struct {
	Op      string        // operation kind, e.g. "hold", "read-pool"
	Status  int           // HTTP status; 0 when there was no answer
	Problem string        // last segment of the problem type, e.g. "insufficient-capacity"
	Err     error         // transport error: no answer
	Latency time.Duration // overrides the measured call time when non-zero
}

// Class sorts an outcome into ok, rejected (a 409: the service said no for
// a business reason) or an error, with the kind to count it under.
func (o Outcome) Class() (class, kind string) {
	switch {
	case o.Err != nil:
		return "error", transportKind(o.Err)
	case o.Status >= 200 && o.Status < 300:
		return "ok", ""
	case o.Status == 409:
		p := o.Problem
		if p == "" {
			p = "conflict"
		}
		return "rejected", p
	}
	if o.Problem != "" {
		return "error", fmt.Sprintf("%d %s", o.Status, o.Problem)
	}
	return "error", fmt.Sprintf("%d", o.Status)
}

// Result is what one measured run produced.
type Result struct {
	Name       string
	Clients    int
	Elapsed    time.Duration    // the measured window
	OK         int64            // 2xx answers in the window
	Rejected   int64            // 409 answers in the window
	Failed     int64            // errors in the window
	ByOp       map[string]int64 // ops in the window by kind
	Errors     map[string]int64 // errors by kind
	Rejections map[string]int64 // rejections by problem
	Hist       *hdrhistogram.Histogram
	// OpHist and OpOK are Hist and OK per operation kind, so a scenario
	// that mixes kinds (bookings beside holds) reports each.
	OpHist map[string]*hdrhistogram.Histogram
	OpOK   map[string]int64
	// CPU is the average number of cores this process (load generator and
	// any embedded service) kept busy in the window, OtherCPU what the rest
	// of the machine did; CPUKnown is false where /proc cannot be read.
	CPU, OtherCPU float64
	StealCPU      float64 // of OtherCPU, what the hypervisor gave to other machines
	CPUKnown      bool
	// GCCycles and GCCPUSec are the garbage collections this process ran
	// in the window and the CPU they took: with an embedded service, its
	// collections and the load generator's together.
	GCCycles uint64
	GCCPUSec float64
}

// OKPerSec is the headline figure: successful operations per second.
func (r Result) OKPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Percentile returns the latency at q (0-100) over every answered or failed
// operation of the window.
func (r Result) Percentile(q float64) time.Duration {
	if r.Hist == nil || r.Hist.TotalCount() == 0 {
		return 0
	}
	return time.Duration(r.Hist.ValueAtQuantile(q)) * time.Microsecond
}

// clientStats is one client's counters; only that client writes them until
// the run is over.
type clientStats struct {
	hist                 *hdrhistogram.Histogram
	ok, rejected, failed int64
	byOp, errs, rejects  map[string]int64
	opHist               map[string]*hdrhistogram.Histogram
	opOK                 map[string]int64
}

func newClientStats() *clientStats {
	return &clientStats{
		hist:    hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3),
		byOp:    map[string]int64{},
		errs:    map[string]int64{},
		rejects: map[string]int64{},
		opHist:  map[string]*hdrhistogram.Histogram{},
		opOK:    map[string]int64{},
	}
}

// Phases of a run, in order.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

// Run drives op from cfg.Clients clients: cfg.Warmup unmeasured, then
// cfg.Duration measured. An operation counts when it both started and ended
// inside the measured window. Clients stop between operations, never in the
// middle of one, so every request gets its answer; ctx cancels requests
// only when the caller gives up (Ctrl-C).
func Run(ctx context.Context, cfg RunConfig, op Op) Result {
	clients := max(cfg.Clients, 1)
	var phase atomic.Int32
	var done atomic.Int64 // measured ops, for progress
	stats := make([]*clientStats, clients)
	var wg sync.WaitGroup
	for w := range clients {
		stats[w] = newClientStats()
		wg.Go(func() {
			st := stats[w]
			for ctx.Err() == nil {
				p := phase.Load()
				if p == phaseDone {
					return
				}
				start := time.Now()
				out := op(ctx, w)
				took := time.Since(start)
				if out.Latency > 0 {
					took = out.Latency
				}
				if p != phaseMeasure || phase.Load() != phaseMeasure {
					continue
				}
				done.Add(1)
				st.record(out, took)
			}
		})
	}

	var progress sync.WaitGroup
	stopProgress := make(chan struct{})
	if cfg.Warmup > 0 {
		sleep(ctx, cfg.Warmup)
	}
	if cfg.AtStart != nil {
		cfg.AtStart()
	}
	phase.Store(phaseMeasure)
	start, cpuStart, gcStart := time.Now(), sampleCPU(), sampleGC()
	if cfg.Progress != nil {
		progress.Go(func() { showProgress(cfg, start, &done, stopProgress) })
	}
	sleep(ctx, cfg.Duration)
	phase.Store(phaseDone)
	elapsed, cpuEnd, gcEnd := time.Since(start), sampleCPU(), sampleGC()
	if cfg.AtEnd != nil {
		cfg.AtEnd()
	}
	close(stopProgress)
	progress.Wait()
	wg.Wait()

	res := Result{
		Name: cfg.Name, Clients: clients, Elapsed: elapsed,
		ByOp: map[string]int64{}, Errors: map[string]int64{}, Rejections: map[string]int64{},
		Hist:   hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3),
		OpHist: map[string]*hdrhistogram.Histogram{}, OpOK: map[string]int64{},
	}
	res.CPU, res.OtherCPU, res.StealCPU, res.CPUKnown = coresUsed(cpuStart, cpuEnd, elapsed)
	res.GCCycles, res.GCCPUSec = gcEnd.since(gcStart)
	for _, st := range stats {
		res.Hist.Merge(st.hist)
		res.OK += st.ok
		res.Rejected += st.rejected
		res.Failed += st.failed
		addAll(res.ByOp, st.byOp)
		addAll(res.Errors, st.errs)
		addAll(res.Rejections, st.rejects)
		addAll(res.OpOK, st.opOK)
		for op, h := range st.opHist {
			if res.OpHist[op] == nil {
				res.OpHist[op] = hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3)
			}
			res.OpHist[op].Merge(h)
		}
	}
	return res
}

// record counts one measured operation.
func (st *clientStats) record(out Outcome, took time.Duration) {
	us := max(int64(took/time.Microsecond), minLatencyMicros)
	_ = st.hist.RecordValue(min(us, maxLatencyMicros))
	st.byOp[out.Op]++
	h := st.opHist[out.Op]
	if h == nil {
		h = hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3)
		st.opHist[out.Op] = h
	}
	_ = h.RecordValue(min(us, maxLatencyMicros))
	switch class, kind := out.Class(); class {
	case "ok":
		st.ok++
		st.opOK[out.Op]++
	case "rejected":
		st.rejected++
		st.rejects[kind]++
	default:
		st.failed++
		st.errs[kind]++
	}
}

// showProgress writes the ops/s of the last second over one terminal line
// until stop is closed, then clears the line.
// With ProgressLines it writes a whole line every ProgressLineEvery.
func showProgress(cfg RunConfig, start time.Time, done *atomic.Int64, stop <-chan struct{}) {
	every := time.Second
	if cfg.ProgressLines {
		every = ProgressLineEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-stop:
			if !cfg.ProgressLines {
				fmt.Fprintf(cfg.Progress, "\r%-60s\r", "")
			}
			return
		case <-tick.C:
			n := done.Load()
			rate := float64(n-last) / every.Seconds()
			elapsed, total := time.Since(start).Seconds(), cfg.Duration.Seconds()
			if cfg.ProgressLines {
				fmt.Fprintf(cfg.Progress, "%s: %.0f ops/s, %.0fs of %.0fs measured\n", cfg.Name, rate, elapsed, total)
			} else {
				fmt.Fprintf(cfg.Progress, "\r%-20s %9.0f ops/s  %3.0fs/%.0fs ", cfg.Name, rate, elapsed, total)
			}
			last = n
		}
	}
}

// ProgressLineEvery is how often a run writes a progress line when not on
// a terminal.
const ProgressLineEvery = 5 * time.Second

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func addAll(dst, src map[string]int64) {
	for k, v := range maps.All(src) {
		dst[k] += v
	}
}
