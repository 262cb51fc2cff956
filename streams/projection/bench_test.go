package projection_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// populate publishes, asynchronously, one PoolDefined per pool then Held
// events round-robin over the pools, n messages in all, straight to the
// stream (no write side: this measures the read path).
func populate(b *testing.B, e *env, npools, n int) uint64 {
	b.Helper()
	ctx := context.Background()
	publish := func(pool string, ev capacity.Event) {
		data, err := capacity.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg(e.store.Subject(pool))
		m.Header.Set(streams.HeaderEventType, ev.EventType())
		m.Header.Set(streams.HeaderEventVersion, strconv.Itoa(capacity.SchemaVersion))
		m.Data = data
		if _, err := e.js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	for i := range npools {
		start := epoch.Add(time.Duration(i%200) * time.Hour)
		publish(fmt.Sprintf("pool-%05d", i), capacity.PoolDefined{Pool: fmt.Sprintf("pool-%05d", i), Region: region,
			Kind: "delivery", StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 1_000_000, DefinedAt: epoch})
	}
	for i := range n - npools {
		at := epoch.Add(time.Duration(i) * time.Millisecond)
		publish(fmt.Sprintf("pool-%05d", i%npools), capacity.Held{ReservationID: "r" + strconv.Itoa(i), Quantity: 1,
			TTL: 10 * time.Minute, ExpiresAt: at.Add(10 * time.Minute), At: at})
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("async publishes not acknowledged")
	}
	last, err := e.store.StreamLastSeq(ctx)
	if err != nil || last != uint64(n) {
		b.Fatalf("stream last seq %d, %v, want %d", last, err, n)
	}
	return last
}

// BenchmarkCatchUp rebuilds the availability model (and, in the second
// case, all three models) from a stream of events, as a process does on start.
func BenchmarkCatchUp(b *testing.B) {
	const events, npools = 300_000, 1000
	s := newEnvBench(b)
	last := populate(b, s, npools, events)
	for _, tc := range []struct {
		name   string
		models func() []projection.Model
	}{
		{"availability", func() []projection.Model { return []projection.Model{views.NewAvailability()} }},
		{"none", func() []projection.Model { return nil }},
		{"all", func() []projection.Model {
			return []projection.Model{views.New()}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var total, cpu time.Duration
			for i := 0; b.Loop(); i++ {
				r, err := projection.New(s.js, s.store.StreamName(), fmt.Sprintf("bench_%s_%d", tc.name, i), projection.Apply(tc.models()...), benchOpts...)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				start, cpuStart := time.Now(), cpuTime()
				go func() { done <- r.Run(ctx) }()
				waitCtx, waitCancel := context.WithTimeout(ctx, 2*time.Minute)
				err = r.WaitFor(waitCtx, last)
				total += time.Since(start)
				cpu += cpuTime() - cpuStart
				waitCancel()
				cancel()
				if runErr := <-done; err != nil || runErr != nil {
					b.Fatalf("WaitFor: %v, Run: %v", err, runErr)
				}
			}
			b.ReportMetric(float64(events)*float64(b.N)/total.Seconds(), "events/s")
			b.ReportMetric(float64(events)*float64(b.N)/cpu.Seconds(), "events/cpu-s")
		})
	}
}

// cpuTime returns the CPU time (user + system) the process has used, server included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchOpts are the runner options of BenchmarkCatchUp.
var benchOpts []projection.Option

// newEnvBench is newEnv for a benchmark, with a larger async publish window.
func newEnvBench(b *testing.B) *env {
	e := newEnv(b)
	js, err := jetstream.New(e.js.Conn(), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	e.js = js
	return e
}

// BenchmarkCatchUpCommits rebuilds availability from a stream shaped like
// busy pools write it: each message a group commit of 32 Held events (the
// benchmark above has one event per message, the worst case).
//
//	go test -run XXX -bench CatchUpCommits -benchtime 1x ./streams/projection/
func BenchmarkCatchUpCommits(b *testing.B) {
	const events, perCommit, npools = 320_000, 32, 1000
	e := newEnvBench(b)
	for i := range npools {
		pool := fmt.Sprintf("pool-%05d", i)
		start := epoch.Add(time.Duration(i%200) * time.Hour)
		publishCommit(b, e, pool, []capacity.Event{capacity.PoolDefined{Pool: pool, Region: region,
			Kind: "delivery", StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 1_000_000, DefinedAt: epoch}})
	}
	for c := range events / perCommit {
		batch := make([]capacity.Event, perCommit)
		for j := range batch {
			i := c*perCommit + j
			at := epoch.Add(time.Duration(i) * time.Millisecond)
			batch[j] = capacity.Held{ReservationID: "r" + strconv.Itoa(i), Quantity: 1, TTL: 10 * time.Minute, ExpiresAt: at.Add(10 * time.Minute), At: at}
		}
		publishCommit(b, e, fmt.Sprintf("pool-%05d", c%npools), batch)
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("async publishes not acknowledged")
	}
	last, err := e.store.StreamLastSeq(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		r, err := projection.New(e.js, e.store.StreamName(), fmt.Sprintf("bench_commits_%d", i), projection.Apply(views.NewAvailability()), benchOpts...)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		waitCtx, waitCancel := context.WithTimeout(ctx, 2*time.Minute)
		err = r.WaitFor(waitCtx, last)
		total += time.Since(start)
		waitCancel()
		cancel()
		if runErr := <-done; err != nil || runErr != nil {
			b.Fatalf("WaitFor: %v, Run: %v", err, runErr)
		}
	}
	b.ReportMetric(float64(events)*float64(b.N)/total.Seconds(), "events/s")
}

// publishCommit publishes events as one commit message, as the write side does.
func publishCommit(b *testing.B, e *env, pool string, events []capacity.Event) {
	b.Helper()
	typ, data, err := capacity.EncodeCommit(events)
	if err != nil {
		b.Fatal(err)
	}
	m := nats.NewMsg(e.store.Subject(pool))
	m.Header.Set(streams.HeaderEventType, typ)
	m.Header.Set(streams.HeaderEventVersion, strconv.Itoa(capacity.SchemaVersion))
	m.Data = data
	if _, err := e.js.PublishMsgAsync(m); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTimeToReady measures how long fresh read models (a new process)
// take to reach the stream's last sequence: rebuilt from sequence 1, resumed
// from a checkpoint at the end of the stream (a graceful restart), and
// resumed from a checkpoint with a tail after it (a crash, the tail at most
// --checkpoint-every events). The stream holds group commits of 32 events
// over 1,000 pools, half of them holds and half confirms of earlier holds.
//
//	go test -run x -bench TimeToReady -benchtime 1x -timeout 30m ./streams/projection/
//
// CAPACITY_BENCH_EVENTS sets the events (default 1,000,000), CAPACITY_BENCH_TAIL
// the tail (default 100,000).
func BenchmarkTimeToReady(b *testing.B) {
	events, tail := envInt(b, "CAPACITY_BENCH_EVENTS", 1_000_000), envInt(b, "CAPACITY_BENCH_TAIL", 100_000)
	const perCommit, npools = 32, 1000
	e := newEnvBench(b)
	ctx := context.Background()
	cp := e.checkpoints(b)
	commit := 0
	publish := func(n int) uint64 {
		for written := 0; written < n; commit++ {
			pool := fmt.Sprintf("pool-%05d", commit%npools)
			round := commit / npools
			var batch []capacity.Event
			if round == 0 {
				start := epoch.Add(time.Duration(commit%200) * time.Hour)
				batch = append(batch, capacity.PoolDefined{Pool: pool, Region: region, Kind: "delivery",
					StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 1_000_000_000, DefinedAt: epoch})
			}
			at := epoch.Add(time.Duration(commit) * time.Millisecond)
			for j := range perCommit / 2 {
				batch = append(batch, capacity.Held{ReservationID: fmt.Sprintf("r%d-%d", round, j), Quantity: 1,
					TTL: 24 * time.Hour, ExpiresAt: at.Add(24 * time.Hour), At: at})
				if round > 0 {
					batch = append(batch, capacity.Confirmed{ReservationID: fmt.Sprintf("r%d-%d", round-1, j), At: at})
				}
			}
			publishCommit(b, e, pool, batch)
			written += len(batch)
		}
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			b.Fatal("async publishes not acknowledged")
		}
		last, err := e.store.StreamLastSeq(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return last
	}
	// ready runs fresh models until they reach last, and returns how long
	// that took, the runner's status, and a function that stops it.
	ready := func(name string, last uint64) (time.Duration, projection.Status, func() time.Duration) {
		m := views.New()
		r, err := projection.New(e.js, e.store.StreamName(), name, projection.Apply(m),
			projection.WithCheckpoints(cp, m, 1<<62, time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- r.Run(runCtx) }()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
		defer wcancel()
		if err := r.WaitFor(wctx, last); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		took := time.Since(start)
		st := r.Counters()
		b.Logf("%s: ready in %v, start seq %d, applied %d events, checkpoint %+v", name, took, st.StartSeq, st.Applied, *st.Checkpoint)
		return took, st, func() time.Duration {
			stopped := time.Now()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			return time.Since(stopped)
		}
	}
	for b.Loop() {
		last := publish(events)
		b.Logf("stream: %d events in %d messages", events, last)
		rebuild, _, stop := ready("rebuild", last)
		save := stop() // the final checkpoint
		info, err := cp.Info(ctx, e.store.StreamName())
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("checkpoint: %d bytes, saved at stop in %v", info.Size, save)
		resume, st, stop := ready("resume", last)
		stop()
		if st.Checkpoint.LoadedSeq != last || st.Applied != 0 {
			b.Fatalf("resume: %+v, want the checkpoint at %d and nothing applied", st, last)
		}
		last = publish(tail)
		withTail, st, stop := ready("resume-tail", last)
		if st.Applied < uint64(tail) || st.Applied > uint64(tail)+perCommit {
			b.Fatalf("resume with a tail applied %d events, want %d", st.Applied, tail)
		}
		stop()
		b.ReportMetric(rebuild.Seconds(), "rebuild-s")
		b.ReportMetric(resume.Seconds(), "resume-s")
		b.ReportMetric(withTail.Seconds(), "resume-tail-s")
		b.ReportMetric(float64(info.Size)/1e6, "checkpoint-MB")
		b.ReportMetric(save.Seconds(), "save-s")
	}
}

// envInt reads a positive integer from the environment, def if unset.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("$%s = %q: want a positive integer", name, v)
	}
	return n
}

// BenchmarkCheckpointReadYourWrite measures how stale the read models get
// while the runner checkpoints a large state: models holding a million
// idle pools (CAPACITY_BENCH_POOLS sets how many; applied to the models
// directly, not from the stream) follow a stream written one event at a
// time, every millisecond, checkpointing every 1,000 events into the
// object store. For each event it times the publish's acknowledgement to
// the runner's position reaching it (WaitFor, a read-your-write wait):
// max-read-your-write-ms is the longest, p99 its 99th percentile.
//
//	go test -run x -bench CheckpointReadYourWrite -benchtime 5000x -timeout 30m ./streams/projection/
func BenchmarkCheckpointReadYourWrite(b *testing.B) {
	npools := envInt(b, "CAPACITY_BENCH_POOLS", 1_000_000)
	e := newEnvBench(b)
	ctx := context.Background()
	cp := e.checkpoints(b)
	cp.SpoolIn(b.TempDir())
	m := views.New()
	for i := range npools {
		id := fmt.Sprintf("idle-%07d", i)
		start := epoch.Add(time.Duration(i/100) * time.Hour)
		// Sequence 1 for each (a pool ignores only its own sequences): the
		// stream's events, which start at 1 on other pools, apply after.
		m.Apply(id, 1, capacity.PoolDefined{Pool: id, Region: region, Kind: "delivery", StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 10, DefinedAt: epoch})
	}
	r, err := projection.New(e.js, e.store.StreamName(), "ryw", projection.Apply(m), projection.WithCheckpoints(cp, m, 1000, time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	var waits []time.Duration
	for i := 0; b.Loop(); i++ {
		pool := fmt.Sprintf("pool-%03d", i%100)
		var ev capacity.Event = capacity.PoolDefined{Pool: pool, Region: region, Kind: "delivery", StartsAt: epoch, EndsAt: epoch.Add(time.Hour), Capacity: 1_000_000, DefinedAt: epoch}
		if i >= 100 {
			at := epoch.Add(time.Duration(i) * time.Millisecond)
			ev = capacity.Held{ReservationID: "r" + strconv.Itoa(i), Quantity: 1, TTL: time.Hour, ExpiresAt: at.Add(time.Hour), At: at}
		}
		data, err := capacity.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		msg := nats.NewMsg(e.store.Subject(pool))
		msg.Header.Set(streams.HeaderEventType, ev.EventType())
		msg.Header.Set(streams.HeaderEventVersion, strconv.Itoa(capacity.SchemaVersion))
		msg.Data = data
		ack, err := e.js.PublishMsg(ctx, msg)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		err = r.WaitFor(wctx, ack.Sequence)
		wcancel()
		if err != nil {
			b.Fatal(err)
		}
		waits = append(waits, time.Since(start))
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	st := r.Counters()
	slices.Sort(waits)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(waits[len(waits)-1]), "max-read-your-write-ms")
	b.ReportMetric(ms(waits[len(waits)*99/100]), "p99-read-your-write-ms")
	b.ReportMetric(float64(st.Checkpoint.SavedSeq), "last-saved-seq")
	b.ReportMetric(float64(st.Checkpoint.Failures), "checkpoint-failures")
}
