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

// history is one scenario's run: the workload, its recorder and where to
// find the ground truth afterwards.
type history struct {
	w        *Workload
	rec      *Recorder
	region   string
	replicas int
	natsURLs string  // comma-separated, for the stream
	logs     []*proc // whose logs go into a failure report
	// allLapsedBy, when set, is the recorder time by which every hold had
	// lapsed everywhere (GroundTruth.AllLapsedBy).
	allLapsedBy int64
	// clockReaches, when set, bounds when a deadline can have passed
	// (GroundTruth.ClockReaches).
	clockReaches func(time.Time) int64
	// filter, when set, gets every recorded operation (the final reads
	// included) and returns those to check: a takeover's asynchronous
	// window taken out (SplitTakeover).
	filter func([]Op) []Op
}

// verify reads every pool once more through the service (those reads join
// the history), resolves unknowns against the stream, checks the history
// and prints the scenario's figures. On failure it writes a report and
// fails the test.
func verify(t *testing.T, h history) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reader := NewClient(h.w.Targets[0], 5*time.Second)
	defer reader.Close()
	var final []PoolDoc
	for _, p := range h.w.Pools {
		var doc PoolDoc
		natstest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
			op := Op{Client: h.w.FirstClient + h.w.Clients, Kind: KindRead, Pool: p.ID}
			op.Call = h.rec.Now()
			r := reader.Do(ctx, "GET", "/v1/pools/"+p.ID, nil, nil)
			op.Return = h.rec.Now()
			fill(&op, r)
			h.rec.Add(op)
			if op.Outcome != OK {
				return errNotOK("final read of "+p.ID, r)
			}
			return r.Decode(&doc)
		})
		final = append(final, doc)
	}
	var gt *GroundTruth
	natstest.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		var err error
		gt, err = ReadGroundTruth(ctx, h.natsURLs, h.region, h.replicas)
		return err
	})
	gt.AllLapsedBy, gt.ClockReaches = h.allLapsedBy, h.clockReaches
	ops := h.rec.All()
	if h.filter != nil {
		ops = h.filter(ops)
	}
	res := Check(ops, h.w.Capacities(), gt, final, 90*time.Second)
	t.Logf("FIGURES %s: %s", t.Name(), res.Figures())
	if !res.Failed() {
		return res
	}
	dir := reportDir(t)
	var logs []string
	for _, p := range h.logs {
		logs = append(logs, p.logPath)
	}
	if err := WriteReport(dir, res, h.w.Capacities(), h.rec.History(), gt, logs); err != nil {
		t.Logf("writing the report: %v", err)
	}
	var why []string
	if res.Check != "Ok" {
		why = append(why, fmt.Sprintf("linearizability check: %s, pools %s", res.Check, strings.Join(res.NotLinearizable, ", ")))
	}
	for i, op := range res.Lost {
		if i == 10 {
			why = append(why, fmt.Sprintf("... and %d more lost", len(res.Lost)-10))
			break
		}
		why = append(why, fmt.Sprintf("lost ack: client %d %s on %s (call %v)", op.Client, describeOp(op), op.Pool, time.Duration(op.Call)))
	}
	why = append(why, res.Overbooked...)
	why = append(why, res.Mismatch...)
	t.Errorf("%s broke a promise (report: %s):\n  %s", t.Name(), dir, strings.Join(why, "\n  "))
	return res
}

// reportDir is where a failed history's report goes: under
// $CAPACITY_ARTIFACTS when set, else a fresh directory in the system's
// temporary directory that outlives the test.
func reportDir(t *testing.T) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	if base := os.Getenv("CAPACITY_ARTIFACTS"); base != "" {
		return filepath.Join(base, name+"-"+time.Now().Format("20060102-150405"))
	}
	dir, err := os.MkdirTemp("", "capacityd-e2e-"+name+"-")
	if err != nil {
		t.Logf("report dir: %v", err)
		return filepath.Join(os.TempDir(), name)
	}
	return dir
}

// requireRate fails the test unless the traffic acknowledged at least
// minPerSec operations a second since (okBefore, since): a quiet run
// proves nothing.
func requireRate(t *testing.T, tr *Traffic, okBefore int64, since time.Time, minPerSec float64) float64 {
	t.Helper()
	rate := float64(tr.OK()-okBefore) / time.Since(since).Seconds()
	if rate < minPerSec {
		t.Fatalf("workload reached %.0f acknowledged ops/s before the fault, want >= %.0f: a quiet run proves nothing", rate, minPerSec)
	}
	return rate
}

// phase is how long one traffic phase between faults lasts: short by
// default, stretched by -soak across the given number of phases.
func phase(def time.Duration, phases int) time.Duration {
	if *soak > 0 && phases > 0 {
		return max(def, *soak/time.Duration(phases))
	}
	return def
}
