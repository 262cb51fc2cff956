package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"

	"github.com/capacityd/capacityd/cmd/capacityd/internal/loadgen"
)

// runBench runs `capacityd <args>` in-process and decodes its JSON report.
func runBench(t *testing.T, args ...string) loadgen.Report {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("run %v: %v\nstderr: %s\nstdout: %s", args, err, stderr.String(), stdout.String())
	}
	var r loadgen.Report
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decoding the report: %v\n%s", err, stdout.String())
	}
	if dec.More() {
		t.Fatalf("more than one JSON document on stdout")
	}
	return r
}

// TestBenchSmoke runs every scenario and ceiling for a second with a few
// clients and checks the report's shape and that every correctness check
// passed. It asserts nothing about speed.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs embedded services for about 15 s")
	}
	// A short warmup: a fresh store's first fsyncs (its directory, its
	// first block) can take a second on a disk other tests keep busy, and a
	// maximum measured in that stall left the open loop nothing to offer.
	r := runBench(t, "bench", "--duration", "1s", "--warmup", "500ms", "--clients", "4", "--pools", "20", "--json")

	if got, want := r.Target, "embedded"; got != want {
		t.Errorf("target = %q, want %q", got, want)
	}
	if r.Clients != 4 || r.DurationSec != 1 || r.WarmupSec != 0.5 || r.NumCPU < 1 || r.GoVersion == "" {
		t.Errorf("header = clients %d, duration %v, warmup %v, cpus %d, go %q", r.Clients, r.DurationSec, r.WarmupSec, r.NumCPU, r.GoVersion)
	}
	if len(r.Notes) == 0 {
		t.Errorf("no notes: the sync mode of the default must be stated")
	}

	type ceilingKey struct{ name, sync string }
	var ceilings []ceilingKey
	for _, c := range r.Ceilings {
		ceilings = append(ceilings, ceilingKey{c.Name, c.Sync})
		if c.OK == 0 || c.OpsPerSec <= 0 || c.LatencyMS.P50 <= 0 {
			t.Errorf("ceiling %s (%s): ok %d, %v ops/s, p50 %v ms", c.Name, c.Sync, c.OK, c.OpsPerSec, c.LatencyMS.P50)
		}
	}
	wantCeilings := []ceilingKey{
		{loadgen.CeilingHTTP, ""},
		{loadgen.CeilingStorageSync, SyncInterval}, {loadgen.CeilingStorageAsync, SyncInterval},
		{loadgen.CeilingStorageSync, SyncAlways}, {loadgen.CeilingStorageAsync, SyncAlways},
	}
	if !slices.Equal(ceilings, wantCeilings) {
		t.Errorf("ceilings = %v, want %v", ceilings, wantCeilings)
	}

	var names []string
	for _, s := range r.Scenarios {
		names = append(names, s.Name)
		wantSync := SyncInterval
		if s.Name == loadgen.Durable || s.Name == loadgen.Bookings {
			wantSync = SyncAlways
		}
		if s.Sync != wantSync {
			t.Errorf("%s: sync = %q, want %q", s.Name, s.Sync, wantSync)
		}
		if s.Skipped || s.OK == 0 || s.OpsPerSec <= 0 || s.LatencyMS.P50 <= 0 || s.LatencyMS.P999 < s.LatencyMS.P50 {
			t.Errorf("%s: skipped %v, ok %d, %v ops/s, latency %+v", s.Name, s.Skipped, s.OK, s.OpsPerSec, s.LatencyMS)
		}
		for _, c := range []string{loadgen.CeilingHTTP, loadgen.CeilingStorageSync, loadgen.CeilingStorageAsync} {
			if s.Ratios[c] <= 0 {
				t.Errorf("%s: ratio to %s = %v, want > 0", s.Name, c, s.Ratios[c])
			}
		}
		if a := s.Appends; a == nil || a.Appends == 0 || a.CommandsPerAppend < 1 {
			t.Errorf("%s: no appends read from /metrics: %+v", s.Name, a)
		}
		if len(s.OpenLoop) != 2 || s.OpenLoop[0].Fraction != 0.5 || s.OpenLoop[1].Fraction != 0.8 {
			t.Errorf("%s: open loop = %+v, want at 50%% and 80%% of max", s.Name, s.OpenLoop)
		}
		for _, o := range s.OpenLoop {
			if o.Sent == 0 || o.OKPerSec <= 0 || o.LatencyMS.P50 <= 0 || o.LatencyMS.P999 < o.LatencyMS.P99 || o.LatencyMS.P99 < o.LatencyMS.P50 {
				t.Errorf("%s: open loop at %v: %+v", s.Name, o.Fraction, o)
			}
		}
		c := s.Correctness
		if c == nil {
			t.Errorf("%s: no correctness check", s.Name)
			continue
		}
		if !c.Passed || c.OverCapacity != 0 || len(c.Problems) > 0 {
			t.Errorf("%s: correctness check failed: %+v", s.Name, *c)
		}
		if c.Held+c.Confirmed == 0 {
			t.Errorf("%s: nothing held or confirmed: %+v", s.Name, *c)
		}
		wantPools := 1
		switch s.Name {
		case loadgen.ManyPools, loadgen.Mixed:
			wantPools = 20
		case loadgen.Bookings:
			wantPools = 1050
			if s.PerOp["book"].OK == 0 || s.PerOp["hold"].OK == 0 {
				t.Errorf("bookings: per op %+v, want books and holds", s.PerOp)
			}
		}
		if c.Pools != wantPools || s.Pools != wantPools {
			t.Errorf("%s: pools = %d checked of %d, want %d", s.Name, c.Pools, s.Pools, wantPools)
		}
		if s.Name == loadgen.Mixed {
			for _, op := range []string{"hold", "confirm", "release"} {
				if s.ByOp[op] == 0 {
					t.Errorf("mixed: no %s among %v", op, s.ByOp)
				}
			}
			if s.ByOp["read-availability"]+s.ByOp["read-pool"] <= s.ByOp["hold"] {
				t.Errorf("mixed: reads do not dominate: %v", s.ByOp)
			}
		}
	}
	if !slices.Equal(names, loadgen.Scenarios) {
		t.Errorf("scenarios = %v, want %v", names, loadgen.Scenarios)
	}
}

// TestBenchURL benches a service started apart, as --url does with a
// running one: durability is unknown there and durable is skipped.
func TestBenchURL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an embedded service")
	}
	cfg := DefaultConfig()
	cfg.HTTP, cfg.NATSListen, cfg.Data, cfg.Sync = "127.0.0.1:0", "127.0.0.1:0", filepath.Join(t.TempDir(), "data"), SyncInterval
	ctx, cancel := context.WithCancel(context.Background())
	a, err := start(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = a.wait(ctx) })

	r := runBench(t, "bench", "--url", a.HTTPURL, "--scenario", "durable,hot-pool", "--ceilings=false",
		"--duration", "500ms", "--warmup", "0", "--clients", "2", "--json")
	if got, want := r.Target, a.HTTPURL; got != want {
		t.Errorf("target = %q, want %q", got, want)
	}
	if len(r.Ceilings) != 0 {
		t.Errorf("ceilings ran with --ceilings=false: %v", r.Ceilings)
	}
	if len(r.Scenarios) != 2 {
		t.Fatalf("scenarios = %d, want 2", len(r.Scenarios))
	}
	hot, durable := r.Scenarios[0], r.Scenarios[1]
	if hot.Name != loadgen.HotPool || hot.Sync != "unknown" || hot.OK == 0 || hot.Correctness == nil || !hot.Correctness.Passed {
		t.Errorf("hot-pool = %+v", hot)
	}
	if durable.Name != loadgen.Durable || !durable.Skipped || len(durable.Notes) == 0 {
		t.Errorf("durable = %+v, want skipped with a note", durable)
	}
}

// noEnv is an environment with nothing set.
func noEnv(string) string { return "" }

// TestBenchFlags checks that bad flags are usage errors.
func TestBenchFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"unknown scenario": {"--scenario", "hot-pool,warm-pool"},
		"no clients":       {"--clients", "0"},
		"bad sync":         {"--sync", "sometimes"},
		"extra argument":   {"now"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseBenchOptions(args, noEnv, io.Discard)
			var usage errUsage
			if !errors.As(err, &usage) {
				t.Fatalf("parseBenchOptions(%v) = %v, want a usage error", args, err)
			}
		})
	}
	o, err := parseBenchOptions([]string{"--scenario", "mixed, hot-pool,mixed"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.Scenarios, []string{loadgen.HotPool, loadgen.Mixed}; !slices.Equal(got, want) {
		t.Errorf("scenarios = %v, want %v", got, want)
	}

	env := func(k string) string {
		if k == "CAPACITY_BENCH_POSTGRES" {
			return "postgres://from-env"
		}
		return ""
	}
	if o, err := parseBenchOptions(nil, env, io.Discard); err != nil || o.Postgres != "postgres://from-env" {
		t.Errorf("postgres from the environment = %q, %v", o.Postgres, err)
	}
	if o, err := parseBenchOptions([]string{"--postgres", "postgres://flag"}, env, io.Discard); err != nil || o.Postgres != "postgres://flag" {
		t.Errorf("--postgres over the environment = %q, %v", o.Postgres, err)
	}
	if o, err := parseBenchOptions(nil, noEnv, io.Discard); err != nil || o.Postgres != "" {
		t.Errorf("postgres by default = %q, %v, want none", o.Postgres, err)
	}
}
