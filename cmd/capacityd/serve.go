package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/capacityd/capacityd/web"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
)

// newLogger builds the process logger: with --log-format auto, the
// human-friendly console format when out is a terminal and JSON lines
// otherwise (a file, a pipe, a log collector). Colours only go to a
// terminal.
func newLogger(cfg Config, out io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		return zerolog.Nop(), errUsage{fmt.Errorf("--log-level %q: %v", cfg.LogLevel, err)}
	}
	tty := terminal(out) != nil
	if cfg.LogFormat == "console" || cfg.LogFormat == "auto" && tty {
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.RFC3339, NoColor: !tty}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), nil
}

// app is the running service: everything serve starts, in the order to stop it.
type app struct {
	cfg   Config
	log   zerolog.Logger
	now   func() time.Time // the clock of every decision (time.Now but in fault tests)
	ns    *embeddedNATS    // nil with --nats-url
	nc    *nats.Conn
	js    jetstream.JetStream
	store *streams.Store
	snaps *kv.Snapshots
	views *projection.Checkpoints // nil with --checkpoint-every 0
	// mirrors are this domain's copies of the peer regions (--peer-regions).
	mirrors []regionMirror
	// terms is this domain's bucket of who writes which region (kv.Terms);
	// w what this instance knows of it and the write sides it runs.
	terms     *kv.Terms
	w         writers
	promoteMu sync.Mutex  // one promotion (or one round of follow) at a time
	lease     *writeLease // --write-lease (lease.go); nil when off
	pools     *pools.Service
	reg       *prometheus.Registry
	stops     []func() // read models and other workers, stopped in reverse order

	stopTracing func() // nil unless spans are exported

	readModels *readModels
	access     *web.Access
	tokens     *web.Tokens // nil without --tokens

	ln       net.Listener
	srv      *http.Server
	serveErr chan error

	// HTTPURL and NATSURL are where the running service listens; PprofURL
	// where its runtime profiles are, "" without --pprof-listen.
	HTTPURL, NATSURL, PprofURL string
}

// serve runs the service until ctx ends, then shuts down gracefully: stop
// accepting, finish in-flight requests, flush, stop NATS. Logs go to
// stderr; where to reach the service is printed plainly on stdout.
func serve(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	a, err := start(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	a.printURLs(stdout)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reloading, stopReloading := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-hup:
				_ = a.Reload() // logged; the old tokens stay
			case <-reloading.Done():
				return
			}
		}
	})
	defer func() { signal.Stop(hup); stopReloading(); wg.Wait() }()
	return a.wait(ctx)
}

// printURLs tells a person where everything is, one plain line each.
func (a *app) printURLs(w io.Writer) {
	fmt.Fprintf(w, "capacityd is ready (region %s, --sync %s)\n", a.cfg.Region, a.cfg.Sync)
	fmt.Fprintf(w, "  API      %s/v1/   (e.g. %s/v1/availability)\n", a.HTTPURL, a.HTTPURL)
	fmt.Fprintf(w, "  UI       %s/\n", a.HTTPURL)
	fmt.Fprintf(w, "  OpenAPI  %s/openapi.json\n", a.HTTPURL)
	fmt.Fprintf(w, "  metrics  %s/metrics\n", a.HTTPURL)
	if a.PprofURL != "" {
		fmt.Fprintf(w, "  pprof    %s   (e.g. go tool pprof %sprofile?seconds=10)\n", a.PprofURL, a.PprofURL)
	}
	where := "external"
	if a.ns != nil {
		where = "embedded, data in " + a.cfg.Data
	}
	fmt.Fprintf(w, "  NATS     %s (%s; try: nats --server %s stream ls)\n", a.NATSURL, where, a.NATSURL)
	fmt.Fprintf(w, "  service  NATS micro service %q on %s.%s.> (try: nats --server %s micro info %s)\n",
		natsapi.ServiceName, natsapi.SubjectRoot, a.cfg.Region, a.NATSURL, natsapi.ServiceName)
	if a.tokens == nil {
		fmt.Fprintf(w, "  access   open to anyone who can reach the port (no --tokens)\n")
	} else {
		fmt.Fprintf(w, "  access   %d bearer tokens from %s (kill -HUP %d reloads them)\n", a.tokens.Len(), a.cfg.Tokens, os.Getpid())
	}
}

// starvation adds to the Go collector's defaults the runtime metrics that
// show a CPU-starved service: how long runnable goroutines waited for a
// processor (go_sched_latencies_seconds), how many are runnable, running
// and waiting (go_sched_goroutines_*), and the GC's stop-the-world pauses
// (go_gc_pauses_seconds). A tail in a request's latency that the append
// histogram does not explain usually shows up in the first.
var starvation = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/(latencies|goroutines):|^/gc/pauses:`)}

// start brings the whole service up: NATS, stores, write side, read models,
// HTTP listener. On error everything started so far is stopped again.
func start(ctx context.Context, cfg Config, stdout io.Writer) (_ *app, err error) {
	log, err := newLogger(cfg, stdout)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: log, reg: prometheus.NewRegistry(), now: newClock(cfg.ClockFile),
		w: writers{terms: map[string]kv.Term{}, writing: map[string]*pools.Service{}}}
	a.reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(starvation)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.WriteLease > 0 {
		a.lease = newWriteLease(cfg.WriteLease)
		a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "capacityd_write_lease_valid",
			Help: "1 while every peer region answered within --write-lease (this region writes), 0 when the lease lapsed"},
			func() float64 {
				if a.leaseCheck() == nil {
					return 1
				}
				return 0
			}))
	}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := a.startTracing(ctx); err != nil {
		return nil, err
	}
	if err := a.connect(ctx); err != nil {
		return nil, err
	}
	if a.ns != nil && a.ns.syncs != nil {
		rounds := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "capacity_fsync_round_seconds",
			Help:    "Time one group fsync round took under --sync always (every append waiting for it waits this long after the server's ack).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}})
		a.reg.MustRegister(rounds)
		a.ns.syncs.OnRound(func(d time.Duration) { rounds.Observe(d.Seconds()) })
	}
	if err := a.openStores(ctx); err != nil {
		return nil, err
	}
	if cfg.PprofListen != "" {
		url, stop, err := servePprof(cfg.PprofListen)
		if err != nil {
			return nil, err
		}
		a.stops = append(a.stops, stop)
		a.PprofURL = url
		log.Info().Str("pprof", url).Msg("runtime profiles served (--pprof-listen)")
	}
	// Listen first: a bind error surfaces before anything else starts, and
	// the bound port names this instance's consumers.
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", cfg.HTTP, err)
	}
	a.ln = ln
	handler, err := a.buildHTTP(ctx)
	if err != nil {
		return nil, err
	}
	a.HTTPURL = "http://" + ln.Addr().String()
	a.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	a.serveErr = make(chan error, 1)
	go func() { a.serveErr <- a.srv.Serve(ln) }()
	ev := log.Info().Str("http", a.HTTPURL).Str("region", cfg.Region).Str("sync", cfg.Sync)
	if a.ns != nil {
		a.NATSURL = a.ns.ClientURL()
		ev = ev.Str("data", cfg.Data)
	} else {
		a.NATSURL = a.nc.ConnectedUrlRedacted()
	}
	ev.Str("nats", a.NATSURL).Str("stream", a.store.StreamName()).Str("bucket", a.snaps.Bucket()).Msg("capacityd ready")
	return a, nil
}

// wait serves until ctx ends or the HTTP server fails, then stops the
// service gracefully.
func (a *app) wait(ctx context.Context) error {
	defer a.close()
	select {
	case err := <-a.serveErr:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	a.log.Info().Msg("shutting down: draining HTTP")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Shutdown)
	defer cancel()
	if err := a.srv.Shutdown(shutdownCtx); err != nil {
		a.log.Warn().Err(err).Msg("http shutdown incomplete")
	}
	return nil
}

// connect starts the embedded server or dials the external one.
func (a *app) connect(ctx context.Context) error {
	opts := []nats.Option{nats.Name("capacityd-" + a.cfg.Region), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		// A server that stops answering (paused, partitioned) is noticed in
		// about 2 s and the client moves to another, instead of after
		// nats.go's default of 2 minutes of pings.
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2)}
	var err error
	if a.cfg.NATSURL == "" {
		if a.ns, err = startEmbedded(a.cfg, a.log); err != nil {
			return err
		}
		opts = append(opts, nats.InProcessServer(a.ns))
		a.nc, err = nats.Connect("", opts...)
	} else {
		a.nc, err = nats.Connect(a.cfg.NATSURL, append(opts, nats.RetryOnFailedConnect(false))...)
	}
	if err != nil {
		return fmt.Errorf("connecting to NATS: %w", err)
	}
	a.js, err = jetstream.New(a.nc)
	return err
}

// openStores creates or checks the event stream and the snapshot bucket.
// A cluster that is still forming ("no suitable peers") is waited for, up
// to a minute, instead of failing the start.
func (a *app) openStores(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// The peers first: a region returning after a takeover must see the
	// new term before it opens its stream (it may have to follow the head).
	a.waitPeers(ctx)
	for attempt := 1; ; attempt++ {
		err := a.tryOpenStores(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, streams.ErrInvalid) || ctx.Err() != nil {
			return err // a stream we must not touch, or out of time
		}
		a.log.Warn().Err(err).Int("attempt", attempt).Msg("JetStream not ready, retrying")
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 2*time.Second)):
		}
	}
}

func (a *app) tryOpenStores(ctx context.Context) error {
	var err error
	if a.snaps, err = kv.New(ctx, a.js, kv.DefaultBucket, kv.WithReplicas(a.cfg.Replicas)); err != nil {
		return fmt.Errorf("snapshot bucket: %w", err)
	}
	if a.cfg.CheckpointEvery > 0 {
		if a.views, err = projection.NewCheckpoints(ctx, a.js, projection.DefaultCheckpointBucket, a.cfg.Replicas); err != nil {
			return fmt.Errorf("read-model checkpoint bucket: %w", err)
		}
		if a.ns != nil {
			a.views.SpoolIn(a.cfg.Data) // a disk of ours; os.TempDir may be memory
		}
	}
	if a.terms, err = kv.OpenTerms(ctx, a.js, a.cfg.Replicas); err != nil {
		return fmt.Errorf("terms bucket: %w", err)
	}
	if a.ns != nil && a.ns.syncs != nil {
		a.terms.SyncWith(a.ns.syncs.Wait)
	}
	// Each copy another region writes follows its head (failback).
	a.followAll(ctx, true)
	// This region's stream, or its copy following the head elsewhere.
	if a.store, err = streams.New(ctx, a.js, a.cfg.Region, append(a.storeOptions(), streams.Following())...); err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	return a.openMirrors(ctx)
}

// storeOptions are the options of every event store this instance writes
// through: under --sync always with the embedded server, each append waits
// for a groupsync round before it returns.
func (a *app) storeOptions() []streams.Option {
	opts := []streams.Option{streams.WithReplicas(a.cfg.Replicas)}
	if a.ns != nil && a.ns.syncs != nil {
		opts = append(opts, streams.WithSync(a.ns.syncs.Wait))
	}
	return opts
}

// close stops everything start started, innermost first.
func (a *app) close() {
	if a.ln != nil && a.srv == nil {
		a.ln.Close() // start failed after listening
	}
	for i := len(a.stops) - 1; i >= 0; i-- {
		a.stops[i]()
	}
	for _, stop := range a.w.stops {
		stop() // write sides of regions promoted here
	}
	if a.pools != nil {
		a.pools.Close()
	}
	if a.nc != nil {
		// Every append has been answered (pools.Close waits for them); flush
		// what is buffered and close.
		if err := a.nc.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			a.log.Warn().Err(err).Msg("nats flush")
		}
		a.nc.Close()
	}
	if a.ns != nil {
		a.ns.Stop()
	}
	if a.stopTracing != nil {
		a.stopTracing()
	}
	a.log.Info().Msg("stopped")
}
