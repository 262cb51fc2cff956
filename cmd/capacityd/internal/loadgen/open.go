package loadgen

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// OpenConfig says how to drive an open-loop load: operations sent at a
// fixed rate whatever the answers do, as independent users arrive.
type OpenConfig struct {
	Name     string
	Rate     float64       // operations offered per second
	Workers  int           // at most this many operations in flight (and the Op's client index bound)
	Duration time.Duration // sends are scheduled over this long
	Progress io.Writer     // nil for quiet
}

// OpenResult is what an open-loop run measured. Latency is taken from each
// operation's intended send time, not from when a worker got to send it:
// when the service stalls, the operations that should have gone out
// meanwhile wait in line and their wait counts (the correction for
// coordinated omission; a closed loop instead sends less while the service
// is slow and hides the stall).
type OpenResult struct {
	Result
	Rate   float64 // offered per second
	Sent   int64   // operations sent
	Missed int64   // scheduled but never sent: the backlog when the grace period ran out
	// WakeLate is how late a worker that slept until a send was due woke
	// up (microseconds): the load generator's own delay (its goroutines
	// waiting for a CPU, timer slack), which every latency from an
	// intended time includes. Sends made late because every worker was
	// busy (the service was slow) are not in it.
	WakeLate *hdrhistogram.Histogram
}

// RunOpen offers op at cfg.Rate for cfg.Duration from at most cfg.Workers
// concurrent operations, then lets the backlog drain for up to half of
// cfg.Duration more; what is still unsent then counts as Missed.
func RunOpen(ctx context.Context, cfg OpenConfig, op Op) OpenResult {
	workers := max(cfg.Workers, 1)
	interval := time.Duration(float64(time.Second) / max(cfg.Rate, 1e-3))
	total := max(int64(cfg.Duration/interval), 1) // the first is due at the start
	var next, sent, missed atomic.Int64
	stats := make([]*clientStats, workers)
	late := make([]*hdrhistogram.Histogram, workers)
	start := time.Now().Add(10 * time.Millisecond)
	deadline := start.Add(cfg.Duration + cfg.Duration/2)
	cpuStart, gcStart := sampleCPU(), sampleGC()
	var wg sync.WaitGroup
	for w := range workers {
		stats[w] = newClientStats()
		late[w] = hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3)
		wg.Go(func() {
			st, wakeLate := stats[w], late[w]
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				intended := start.Add(time.Duration(i) * interval)
				if time.Now().After(deadline) {
					missed.Add(1)
					continue
				}
				if d := time.Until(intended); d > 0 {
					sleep(ctx, d)
					_ = wakeLate.RecordValue(max(time.Since(intended).Microseconds(), minLatencyMicros))
				}
				out := op(ctx, w)
				sent.Add(1)
				st.record(out, time.Since(intended))
			}
		})
	}
	var progress sync.WaitGroup
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		progress.Go(func() {
			showProgress(RunConfig{Name: cfg.Name, Duration: cfg.Duration, Progress: cfg.Progress}, start, &sent, stopProgress)
		})
	}
	wg.Wait()
	close(stopProgress)
	progress.Wait()
	elapsed := time.Since(start)
	res := OpenResult{Rate: cfg.Rate, Sent: sent.Load(), Missed: missed.Load(),
		WakeLate: hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3)}
	for _, h := range late {
		res.WakeLate.Merge(h)
	}
	res.Result = Result{
		Name: cfg.Name, Clients: workers, Elapsed: elapsed,
		ByOp: map[string]int64{}, Errors: map[string]int64{}, Rejections: map[string]int64{},
		Hist: hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3),
	}
	res.CPU, res.OtherCPU, res.StealCPU, res.CPUKnown = coresUsed(cpuStart, sampleCPU(), elapsed)
	res.GCCycles, res.GCCPUSec = sampleGC().since(gcStart)
	for _, st := range stats {
		res.Hist.Merge(st.hist)
		res.OK += st.ok
		res.Rejected += st.rejected
		res.Failed += st.failed
		addAll(res.ByOp, st.byOp)
		addAll(res.Errors, st.errs)
		addAll(res.Rejections, st.rejects)
	}
	return res
}

// OpenFigure is one open-loop load at a fraction of the closed-loop maximum.
type OpenFigure struct {
	Fraction   float64 `json:"fraction"` // of the closed-loop ok/s
	OfferedPer float64 `json:"offered_per_sec"`
	OKPerSec   float64 `json:"ok_per_sec"`
	Sent       int64   `json:"sent"`
	Missed     int64   `json:"missed"` // never sent: the service fell too far behind
	Failed     int64   `json:"failed"`
	Rejected   int64   `json:"rejected"`
	LatencyMS  Latency `json:"latency_ms"` // from each operation's intended send time
	GC         *GC     `json:"gc,omitempty"`
	// WakeLateMS is how late the load generator's workers woke for a send
	// they slept until (OpenResult.WakeLate): a p99 near the latency's p99
	// says the generator, not the service, made the tail.
	WakeLateMS *Latency `json:"generator_wake_late_ms,omitempty"`
	// Service is what the service's own histograms say of the window.
	Service *ServiceTail `json:"service,omitempty"`
}

// OpenFigureOf summarizes an open-loop run at fraction of the maximum.
func OpenFigureOf(r OpenResult, fraction float64) OpenFigure {
	f := FigureOf(r.Result, "")
	of := OpenFigure{Fraction: fraction, OfferedPer: r.Rate, OKPerSec: f.OpsPerSec, Sent: r.Sent, Missed: r.Missed,
		Failed: r.Failed, Rejected: r.Rejected, LatencyMS: f.LatencyMS, GC: f.GC}
	if r.WakeLate != nil && r.WakeLate.TotalCount() > 0 {
		l := latencyOf(r.WakeLate)
		of.WakeLateMS = &l
	}
	return of
}

// String is the figure as a report line.
func (f OpenFigure) String() string {
	s := fmt.Sprintf("open loop at %.0f%% of max (%s/s offered): %s ok/s, p50 %s, p99 %s, p99.9 %s, max %s",
		f.Fraction*100, rate(f.OfferedPer), rate(f.OKPerSec), msStr(f.LatencyMS.P50), msStr(f.LatencyMS.P99),
		msStr(f.LatencyMS.P999), msStr(f.LatencyMS.Max))
	if f.Missed > 0 || f.Failed > 0 {
		s += fmt.Sprintf(" (%d errors, %d never sent)", f.Failed, f.Missed)
	}
	if f.GC != nil {
		s += "; " + f.GC.String()
	}
	if f.WakeLateMS != nil {
		s += fmt.Sprintf("; generator woke late p99 %s", msStr(f.WakeLateMS.P99))
	}
	if f.Service != nil {
		s += "; " + f.Service.String()
	}
	return s
}
