package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/capacityd/capacityd/cmd/capacityd/internal/loadgen"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// benchOptions is what `capacityd bench` is told by its flags.
type benchOptions struct {
	Scenarios  []string
	Clients    int
	Duration   time.Duration
	Warmup     time.Duration
	Pools      int
	JSON       bool
	Sync       string // sync mode of the embedded service for every scenario but durable
	PoolBatch  string // --pool-batch of the embedded services
	KeepData   bool
	URL        string // a running service to bench instead of an embedded one
	Region     string
	Ceilings   bool
	CPUProfile string
	// OpenLoop lists the fractions of each scenario's closed-loop maximum
	// at which it is then offered load open loop, for --duration/2 each.
	OpenLoop []float64
	// Postgres, when set, is the PostgreSQL URL of the peer: the same
	// holds served by a service on PostgreSQL, measured in the same run.
	Postgres string
}

// newBenchOptions returns the defaults of `capacityd bench`.
func newBenchOptions() benchOptions {
	return benchOptions{
		Scenarios: loadgen.Scenarios,
		Clients:   64,
		Duration:  10 * time.Second,
		Warmup:    2 * time.Second,
		Pools:     1000,
		Sync:      SyncInterval,
		PoolBatch: "auto",
		Region:    "local",
		Ceilings:  true,
		OpenLoop:  []float64{0.5, 0.8},
	}
}

const benchUsage = `Usage: capacityd bench [flags]

Measures the service under load and, in the same run, with the same HTTP
client and the same concurrency, two ceilings: a do-nothing HTTP handler and
raw JetStream publishes to a scratch stream. By default each scenario gets its
own embedded service in a temporary directory; --url benches a running one.

Scenarios: hot-pool (one pool, quantity-1 holds), nats (hot-pool's holds as
NATS requests to the micro service instead of HTTP), many-pools (holds spread
over --pools pools), mixed (10 reads : 1 write of holds, confirms, releases),
durable (hot-pool with --sync always, the service's default durability),
bookings (two-pool bookings over 1,000 slot pools and 50 picking pools beside
single-pool holds on the slots, --sync always; each kind reported apart).

With --postgres URL (or $CAPACITY_BENCH_POSTGRES) the bench also starts, in
this process, a small HTTP service with the same hold route and JSON on
PostgreSQL (one transaction per hold with a row lock on the pool, in a
scratch schema it drops afterwards), drives hot-pool's and many-pools' load
at it with the same client and concurrency, and reports it as a peer with
each scenario's ratio to it.

Example: capacityd bench --scenario hot-pool,durable --duration 10s --json

Flags:
`

// parseBenchOptions reads the flags of `capacityd bench`.
func parseBenchOptions(args []string, getenv func(string) string, stderr io.Writer) (benchOptions, error) {
	o := newBenchOptions()
	o.Postgres = getenv("CAPACITY_BENCH_POSTGRES")
	fs := flag.NewFlagSet("capacityd bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), benchUsage); fs.PrintDefaults() }
	scenarios := fs.String("scenario", "all", "scenarios to run, comma-separated: "+strings.Join(loadgen.Scenarios, ", ")+" or all")
	fs.IntVar(&o.Clients, "clients", o.Clients, "concurrent clients, each with its own keep-alive connection")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "measured time per scenario and per ceiling")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "unmeasured load before each measurement")
	fs.IntVar(&o.Pools, "pools", o.Pools, "pools of many-pools and mixed")
	fs.BoolVar(&o.JSON, "json", o.JSON, "print one JSON document with all results to stdout")
	fs.StringVar(&o.PoolBatch, "pool-batch", o.PoolBatch, "--pool-batch of the embedded services: auto, on or off")
	fs.StringVar(&o.Sync, "sync", o.Sync, "sync mode of the embedded service for hot-pool, many-pools and mixed: always, strict or interval (durable always uses always; the service's own default is always)")
	fs.BoolVar(&o.KeepData, "keep-data", o.KeepData, "keep the embedded services' data and logs in the temporary directory")
	fs.StringVar(&o.URL, "url", o.URL, "bench the service running at this URL instead of embedded ones")
	fs.StringVar(&o.Region, "region", o.Region, "region of the pools the bench defines")
	fs.BoolVar(&o.Ceilings, "ceilings", o.Ceilings, "measure the HTTP and storage ceilings")
	fs.Func("open-loop", "after each scenario's closed-loop maximum, offer it load at these fractions of that maximum, open loop (latency from intended send times), for --duration/2 each; \"off\" for none (default 0.5,0.8)", func(v string) error {
		o.OpenLoop = nil
		if v == "off" || v == "" {
			return nil
		}
		for _, f := range strings.Split(v, ",") {
			x, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || x <= 0 || x > 2 {
				return fmt.Errorf("open-loop fraction %q: want a number in (0, 2]", f)
			}
			o.OpenLoop = append(o.OpenLoop, x)
		}
		return nil
	})
	fs.StringVar(&o.Postgres, "postgres", o.Postgres, "PostgreSQL URL of the peer to compare with (env CAPACITY_BENCH_POSTGRES); the role needs CREATE on its database")
	fs.StringVar(&o.CPUProfile, "cpuprofile", o.CPUProfile, "write a CPU profile of the whole run (load generator and embedded service) to this file")
	if err := fs.Parse(args); err != nil {
		return o, errUsage{err}
	}
	if fs.NArg() > 0 {
		return o, errUsage{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	o.Scenarios = nil
	for s := range strings.SplitSeq(*scenarios, ",") {
		switch s = strings.TrimSpace(s); {
		case s == "all":
			o.Scenarios = append(o.Scenarios, loadgen.Scenarios...)
		case slices.Contains(loadgen.Scenarios, s):
			o.Scenarios = append(o.Scenarios, s)
		case s != "":
			return o, errUsage{fmt.Errorf("--scenario %q: want %s or all", s, strings.Join(loadgen.Scenarios, ", "))}
		}
	}
	slices.Sort(o.Scenarios)
	o.Scenarios = slices.Compact(o.Scenarios)
	slices.SortStableFunc(o.Scenarios, func(a, b string) int {
		return slices.Index(loadgen.Scenarios, a) - slices.Index(loadgen.Scenarios, b)
	})
	switch {
	case len(o.Scenarios) == 0:
		return o, errUsage{errors.New("--scenario: no scenario given")}
	case o.Clients < 1:
		return o, errUsage{errors.New("--clients must be at least 1")}
	case o.Duration <= 0:
		return o, errUsage{errors.New("--duration must be positive")}
	case o.Warmup < 0:
		return o, errUsage{errors.New("--warmup must not be negative")}
	case o.Pools < 1:
		return o, errUsage{errors.New("--pools must be at least 1")}
	case o.Sync != SyncAlways && o.Sync != SyncStrict && o.Sync != SyncInterval:
		return o, errUsage{fmt.Errorf("--sync %q: want %s, %s or %s", o.Sync, SyncAlways, SyncStrict, SyncInterval)}
	}
	return o, nil
}

// bench runs the scenarios and ceilings and prints the report: a table,
// or JSON with --json. Progress goes to stderr when it is a terminal. It
// fails when a correctness check failed.
func bench(ctx context.Context, o benchOptions, stdout, stderr io.Writer) (err error) {
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	b := &benchRun{opts: o, progress: stderr, lines: terminal(stderr) == nil}
	b.tmp, err = os.MkdirTemp("", "capacityd-bench-*")
	if err != nil {
		return err
	}
	defer func() {
		if !o.KeepData {
			os.RemoveAll(b.tmp)
		}
	}()
	b.report = &loadgen.Report{
		StartedAt: time.Now().UTC(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		LoadAvg: loadAvg(), Target: "embedded", Clients: o.Clients, DurationSec: o.Duration.Seconds(), WarmupSec: o.Warmup.Seconds(),
	}
	if o.URL != "" {
		b.report.Target = o.URL
	}
	runErr := b.run(ctx)
	if runErr != nil {
		if ctx.Err() == nil {
			return runErr
		}
		b.note("interrupted: %v; the figures above are those finished before", runErr)
	}
	b.report.LoadAvgEnd = loadAvg()
	if o.KeepData {
		b.note("data and logs kept in %s", b.tmp)
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(b.report)
	} else {
		err = loadgen.WriteTable(stdout, b.report)
	}
	if err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	var failed []string
	for _, s := range b.report.Scenarios {
		if s.Correctness != nil && !s.Correctness.Passed {
			failed = append(failed, s.Name)
		}
	}
	for _, p := range b.report.Peers {
		if p.Correctness != nil && !p.Correctness.Passed {
			failed = append(failed, "peer "+p.Peer+" ("+p.Scenario+")")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("correctness check failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// benchRun is one `capacityd bench`: its options, scratch directory and the
// report it fills in.
type benchRun struct {
	opts     benchOptions
	tmp      string
	progress io.Writer // stderr: what the bench is doing
	lines    bool      // stderr is no terminal: whole lines, every few seconds
	report   *loadgen.Report
}

func (b *benchRun) note(format string, args ...any) {
	b.report.Notes = append(b.report.Notes, fmt.Sprintf(format, args...))
}

// status tells the person running the bench what it is doing, on stderr.
func (b *benchRun) status(format string, args ...any) {
	if b.progress == nil {
		return
	}
	if b.lines {
		fmt.Fprintf(b.progress, "bench: %s\n", fmt.Sprintf(format, args...))
		return
	}
	fmt.Fprintf(b.progress, "\r%-60s\n", fmt.Sprintf(format, args...))
}

func (b *benchRun) runConfig(name string) loadgen.RunConfig {
	return loadgen.RunConfig{Name: name, Clients: b.opts.Clients, Warmup: b.opts.Warmup, Duration: b.opts.Duration,
		Progress: b.progress, ProgressLines: b.lines}
}

// ceilingRuns counts the measured runs the ceilings take: the HTTP
// ceiling once, both storage ceilings per sync mode the scenarios use.
func (b *benchRun) ceilingRuns() int {
	var modes []string
	for _, s := range b.opts.Scenarios {
		mode := b.syncOf(s)
		if mode == "unknown" {
			mode = b.opts.Sync
		}
		if !slices.Contains(modes, mode) && !(s == loadgen.Durable && b.opts.URL != "") {
			modes = append(modes, mode)
		}
	}
	return 1 + 2*len(modes)
}

// syncOf is the sync mode scenario runs with: "unknown" against --url.
func (b *benchRun) syncOf(scenario string) string {
	switch {
	case b.opts.URL != "":
		return "unknown"
	case scenario == loadgen.Durable, scenario == loadgen.Bookings:
		return SyncAlways
	}
	return b.opts.Sync
}

func (b *benchRun) run(ctx context.Context) error {
	o := b.opts
	if o.URL == "" {
		var ran []string
		for _, name := range o.Scenarios {
			ran = append(ran, name+" with --sync "+b.syncOf(name))
		}
		b.note("the service's default is --sync %s (fsync before every ack; what durable measures); this run: %s",
			SyncAlways, strings.Join(ran, ", "))
	} else {
		b.note("against --url the bench cannot know or set the target's durability: sync shows as unknown, durable is skipped")
	}
	b.note("the load generator runs in the bench process beside the embedded service and the ceilings, sharing the same %d CPUs; \"cores us/others\" shows what the bench process and the rest of the machine used while each figure was measured, and the hypervisor's steal when other virtual machines took some of it", runtime.NumCPU())
	perRun := o.Warmup + o.Duration
	total := time.Duration(len(o.Scenarios)) * perRun
	if o.Ceilings {
		n := b.ceilingRuns()
		total += time.Duration(n) * perRun
		b.status("ceilings first: %d runs of %s warmup + %s, about %s (--ceilings=false skips them)", n, o.Warmup, o.Duration, time.Duration(n)*perRun)
	}
	if o.Postgres != "" {
		n := b.peerRuns()
		total += time.Duration(n) * perRun
		b.status("postgres peer: %d runs, about %s", n, time.Duration(n)*perRun)
	}
	b.status("%d scenario(s): about %s; in all about %s plus setup", len(o.Scenarios), time.Duration(len(o.Scenarios))*perRun, total)
	if o.Ceilings {
		b.note("storage ceilings take one ack per message; the service group-commits the commands queued on a pool as one message (one write, one fsync under --sync always), so it can beat them: a ratio above 1 there is group commit at work")
		if err := b.ceilings(ctx); err != nil {
			return err
		}
	}
	if o.Postgres != "" {
		if err := b.postgresPeers(ctx); err != nil {
			return fmt.Errorf("postgres peer: %w", err)
		}
	}
	for _, name := range o.Scenarios {
		sr, err := b.scenario(ctx, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b.comparePeers(&sr)
		for _, ceiling := range []string{loadgen.CeilingHTTP, loadgen.CeilingStorageSync, loadgen.CeilingStorageAsync} {
			sync := sr.Sync
			if sync == "unknown" {
				sync = o.Sync // the storage ceilings ran on a local scratch server with --sync
			}
			c, ok := b.report.Ceiling(ceiling, sync)
			if !ok || sr.Skipped {
				continue
			}
			if c.OpsPerSec > 0 {
				sr.Ratios[ceiling] = sr.OpsPerSec / c.OpsPerSec
			}
			if c.OpsPerCPUSec != nil && sr.OpsPerCPUSec != nil && *c.OpsPerCPUSec > 0 {
				if sr.CPURatios == nil {
					sr.CPURatios = map[string]float64{}
				}
				sr.CPURatios[ceiling] = *sr.OpsPerCPUSec / *c.OpsPerCPUSec
			}
		}
		b.report.Scenarios = append(b.report.Scenarios, sr)
	}
	return nil
}

// ceilings measures the HTTP ceiling once and the storage ceilings once
// per sync mode the scenarios use, each on a scratch embedded nats-server
// configured like the service's.
func (b *benchRun) ceilings(ctx context.Context) error {
	b.status("ceiling: http")
	hc, err := loadgen.StartHTTPCeiling()
	if err != nil {
		return fmt.Errorf("http ceiling: %w", err)
	}
	client := loadgen.NewClient(hc.URL(), b.opts.Clients)
	res, err := loadgen.HTTPCeilingRun(ctx, client, b.runConfig("ceiling http"))
	client.Close()
	if cerr := hc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("http ceiling: %w", err)
	}
	fig := loadgen.FigureOf(res, "")
	fig.Name = loadgen.CeilingHTTP
	b.report.Ceilings = append(b.report.Ceilings, fig)

	var modes []string
	for _, s := range b.opts.Scenarios {
		mode := b.syncOf(s)
		if mode == "unknown" {
			mode = b.opts.Sync
		}
		if !slices.Contains(modes, mode) && !(s == loadgen.Durable && b.opts.URL != "") {
			modes = append(modes, mode)
		}
	}
	if b.opts.URL != "" {
		b.note("storage ceilings ran on a local scratch nats-server with --sync %s, not on the target's NATS", b.opts.Sync)
	}
	for _, mode := range modes {
		if err := b.storageCeilings(ctx, mode); err != nil {
			return fmt.Errorf("storage ceiling (sync %s): %w", mode, err)
		}
	}
	return nil
}

// storageCeilings runs both storage ceilings on a scratch embedded server
// with the given sync mode.
func (b *benchRun) storageCeilings(ctx context.Context, mode string) error {
	cfg := b.serviceConfig("ceiling-"+mode, mode)
	ns, err := startEmbedded(cfg, zerolog.Nop())
	if err != nil {
		return err
	}
	defer ns.Stop()
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	defer nc.Close()
	for _, kind := range []string{loadgen.CeilingStorageSync, loadgen.CeilingStorageAsync} {
		b.status("ceiling: %s, sync %s", kind, mode)
		var sync func(context.Context, string) error
		if ns.syncs != nil {
			sync = ns.syncs.Wait
		}
		res, err := loadgen.StorageCeiling(ctx, nc, kind, b.runConfig("ceiling "+kind), sync)
		if err != nil {
			return err
		}
		fig := loadgen.FigureOf(res, mode)
		fig.Name = kind
		b.report.Ceilings = append(b.report.Ceilings, fig)
	}
	return nil
}

// serviceConfig is the configuration of an embedded service (or scratch
// server) named name: free ports, its own directory under the bench's.
func (b *benchRun) serviceConfig(name, sync string) Config {
	cfg := DefaultConfig()
	cfg.HTTP = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:0"
	cfg.Data = filepath.Join(b.tmp, name)
	cfg.Region = b.opts.Region
	cfg.Sync = sync
	cfg.PoolBatch = b.opts.PoolBatch
	cfg.LogLevel = "warn"
	return cfg
}

// scenario runs one scenario against a fresh embedded service, or the
// --url target, and checks its pools afterwards.
func (b *benchRun) scenario(ctx context.Context, name string) (loadgen.ScenarioReport, error) {
	sr := loadgen.ScenarioReport{Figure: loadgen.Figure{Name: name, Sync: b.syncOf(name), Clients: b.opts.Clients}, Ratios: map[string]float64{}}
	if name == loadgen.Durable && b.opts.URL != "" {
		sr.Skipped = true
		sr.Notes = append(sr.Notes, "skipped: the bench cannot set the durability of a service it did not start; run hot-pool against a target started with --sync always instead")
		return sr, nil
	}
	if name == loadgen.NATS && b.opts.URL != "" {
		sr.Skipped = true
		sr.Notes = append(sr.Notes, "skipped: against --url the bench does not know the target's NATS")
		return sr, nil
	}
	base, natsURL := b.opts.URL, ""
	if base == "" {
		b.status("%s: starting an embedded service (sync %s)", name, sr.Sync)
		stop, a, err := b.startService(ctx, name, sr.Sync)
		if err != nil {
			return sr, err
		}
		defer stop()
		base, natsURL = a.HTTPURL, a.NATSURL
	}
	var natsClient *natsapi.Client
	if name == loadgen.NATS {
		// Over TCP, as a booking API on another machine would connect.
		nc, err := nats.Connect(natsURL, nats.Name("capacityd-bench"))
		if err != nil {
			return sr, fmt.Errorf("connecting to %s: %w", natsURL, err)
		}
		defer nc.Close()
		natsClient = natsapi.NewClient(nc, b.opts.Region)
		sr.Notes = append(sr.Notes, "holds as NATS requests to the micro service (one connection, "+strconv.Itoa(b.opts.Clients)+" concurrent requesters); pools defined and checked over HTTP")
	}
	client := loadgen.NewClient(base, b.opts.Clients)
	defer client.Close()
	if err := waitReady(ctx, client); err != nil {
		return sr, err
	}
	wl, err := loadgen.NewWorkload(loadgen.WorkloadConfig{
		Scenario: name, Client: client, NATS: natsClient, Clients: b.opts.Clients, Pools: b.opts.Pools, Region: b.opts.Region,
		Prefix: "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36),
	})
	if err != nil {
		return sr, err
	}
	sr.Pools = wl.Pools()
	b.status("%s: defining %d pools", name, sr.Pools)
	if err := wl.Setup(ctx); err != nil {
		return sr, err
	}
	b.status("%s: running", name)
	watch := loadgen.NewAppendWatch(ctx, client)
	rc := b.runConfig(name)
	rc.AtStart, rc.AtEnd = watch.Start, watch.End
	res := loadgen.Run(ctx, rc, wl.Op)
	if err := ctx.Err(); err != nil {
		return sr, err
	}
	sr.Figure = loadgen.FigureOf(res, sr.Sync)
	sr.Appends = watch.Result()
	for _, fraction := range b.opts.OpenLoop {
		if sr.OpsPerSec <= 0 {
			break // nothing answered: no maximum to take a fraction of
		}
		// At least one a second: a maximum measured in a stall (a slow
		// disk's first syncs, a short run) still gets its open-loop rows.
		offered := max(fraction*sr.OpsPerSec, 1)
		b.status("%s: open loop at %.0f%% of max, %.0f/s", name, fraction*100, offered)
		tail := loadgen.NewTailWatch(ctx, client)
		tail.Start()
		open := loadgen.RunOpen(ctx, loadgen.OpenConfig{Name: fmt.Sprintf("%s %.0f%%", name, fraction*100), Rate: offered,
			Workers: b.opts.Clients, Duration: max(b.opts.Duration/2, 500*time.Millisecond), Progress: b.progress}, wl.Op)
		if err := ctx.Err(); err != nil {
			return sr, err
		}
		tail.End()
		figure := loadgen.OpenFigureOf(open, fraction)
		figure.Service = tail.Result()
		sr.OpenLoop = append(sr.OpenLoop, figure)
	}
	b.status("%s: checking %d pools", name, sr.Pools)
	check := wl.Verify(ctx)
	if err := ctx.Err(); err != nil {
		return sr, err // an interrupted check proves nothing either way
	}
	sr.Correctness = &check
	if n := wl.AvailabilityUnavailable(); n > 0 {
		sr.Notes = append(sr.Notes, fmt.Sprintf("GET /v1/availability answered 503 %d times (read model not running or behind), counted as errors where measured; after each, reads used GET /v1/pools/{id} for a second", n))
	}
	return sr, nil
}

// startService starts an embedded service for one scenario, its log in
// the bench directory, and returns how to stop it and the service.
func (b *benchRun) startService(ctx context.Context, name, sync string) (stop func(), _ *app, err error) {
	log, err := os.Create(filepath.Join(b.tmp, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	a, err := start(ctx, b.serviceConfig(name, sync), log)
	if err != nil {
		log.Close()
		return nil, nil, fmt.Errorf("starting the embedded service (log %s): %w", log.Name(), err)
	}
	return func() {
		stopped, cancel := context.WithCancel(context.Background())
		cancel() // wait returns at once and shuts down gracefully
		_ = a.wait(stopped)
		log.Close()
	}, a, nil
}

// waitReady polls GET /readyz until it answers 200, for up to 30 seconds.
func waitReady(ctx context.Context, c *loadgen.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		out := c.Do(ctx, "readyz", http.MethodGet, "/readyz", nil, nil)
		if out.Err == nil && out.Status == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			if out.Err != nil {
				return fmt.Errorf("%s not ready: %w", c.Base(), out.Err)
			}
			return fmt.Errorf("%s not ready: /readyz answers %d", c.Base(), out.Status)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// terminal returns w if it is a terminal, for progress lines; else nil.
func terminal(w io.Writer) io.Writer {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return w
}

// loadAvg reads the 1, 5 and 15 minute load averages where the system
// has /proc/loadavg; nil elsewhere.
func loadAvg() []float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return nil
	}
	out := make([]float64, 3)
	for i := range out {
		if out[i], err = strconv.ParseFloat(fields[i], 64); err != nil {
			return nil
		}
	}
	return out
}
