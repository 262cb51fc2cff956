package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// readModels are the in-memory read models of this instance and the
// projections that feed them: one from this region's event stream and one
// from this domain's copy (mirror) of every peer region's. Pool ids are
// unique across regions and each model ignores a sequence at or below the
// last it applied to a pool, so the sources share the models; each keeps
// its own position, and the models' single position is that of the home
// region (the other sources do not move it, see source.Apply).
type readModels struct {
	models       *views.Models
	availability *views.Availability
	reservations *views.Reservations
	board        *views.Board
	sources      []*source // this region first, then the peers in flag order; fixed
	now          func() time.Time
	region       string

	homeMu sync.RWMutex
	home   map[string]string // pool -> home region, for pools of peer regions

	// The projections' goroutines, stopped and started again by rebuild.
	runMu     sync.Mutex
	runCancel context.CancelFunc
	runWG     sync.WaitGroup
	newRunner func(src *source) (*projection.Runner, error)
	log       zerolog.Logger

	broken     chan struct{} // closed once the models are Broken (repair)
	brokenOnce sync.Once
}

// source is one stream feeding the read models. Its runner is replaced
// when the models are rebuilt (rebuild); the source stays.
type source struct {
	region  string
	stream  string
	mirror  *streams.Mirror // nil for this region's own stream
	current atomic.Pointer[projection.Runner]
}

// runner returns the source's projection now.
func (s *source) runner() *projection.Runner { return s.current.Load() }

// homeRunner returns the projection of this region's stream, whose
// position is the models' own.
func (rm *readModels) homeRunner() *projection.Runner { return rm.sources[0].runner() }

// startReadModels creates the models and runs their projections until the
// returned stop function is called.
func (a *app) startReadModels(ctx context.Context) (*readModels, error) {
	models := views.New() // one copy of each pool, shared by the three models
	rm := &readModels{
		models:       models,
		availability: models.Availability,
		reservations: models.Reservations,
		board:        models.Board,
		now:          a.now,
		region:       a.cfg.Region,
		home:         make(map[string]string),
		broken:       make(chan struct{}),
	}
	durable := projection.DurableName("views", a.cfg.Region, a.instance())
	rm.log = a.log.With().Str("component", "projection").Str("durable", durable).Logger()
	rm.newRunner = func(src *source) (*projection.Runner, error) {
		// Not rm.log: the runner names its durable in every line itself,
		// and a second "durable" key makes the JSON line ambiguous.
		opts := []projection.Option{projection.WithLogger(a.log.With().Str("component", "projection").Str("stream", src.stream).Logger())}
		if a.views != nil && src.mirror == nil {
			// Only this region's stream checkpoints the models. A restart
			// restores them whole (peer pools included) and each peer's
			// projection reads its mirror again from 1: applying a commit
			// a pool already has changes nothing, so this costs time only.
			opts = append(opts, projection.WithCheckpoints(a.views, models, a.cfg.CheckpointEvery, a.cfg.CheckpointInterval))
		}
		return projection.New(a.js, src.stream, durable, rm.handler(src.region), opts...)
	}
	rm.sources = append(rm.sources, &source{region: a.cfg.Region, stream: a.store.StreamName()})
	for _, m := range a.mirrors {
		rm.sources = append(rm.sources, &source{region: m.events.Region(), stream: m.events.StreamName(), mirror: m.events})
	}
	for _, src := range rm.sources {
		runner, err := rm.newRunner(src)
		if err != nil {
			return nil, err
		}
		src.current.Store(runner)
	}
	rm.startRunners()
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	var sweeper sync.WaitGroup
	sweeper.Go(func() { a.sweepLapsed(sweepCtx, rm, a.cfg.SweepEvery) })
	sweeper.Go(func() { a.repairReadModels(sweepCtx, rm) })
	a.stops = append(a.stops, func() { stopSweep(); sweeper.Wait(); rm.stopRunners() })

	a.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "capacity_readmodel_position", Help: "Stream sequence the read models reflect."},
			func() float64 { return float64(rm.homeRunner().Position()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "capacity_readmodel_lag", Help: "Stream last sequence minus the read models' position."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				lag, err := rm.homeRunner().Lag(ctx)
				if err != nil {
					return -1
				}
				return float64(lag)
			}),
		&sourceCollector{rm: rm},
	)
	return rm, nil
}

// startRunners runs every source's projection until stopRunners.
func (rm *readModels) startRunners() {
	ctx, cancel := context.WithCancel(context.Background())
	rm.runCancel = cancel
	for _, src := range rm.sources {
		runner := src.runner()
		rm.runWG.Go(func() {
			if err := runner.Run(ctx); err != nil {
				rm.log.Error().Err(err).Str("region", src.region).Msg("projection stopped")
			}
		})
	}
}

// stopRunners stops every projection (each checkpoints on its way out, if
// it does) and waits for them.
func (rm *readModels) stopRunners() {
	rm.runMu.Lock()
	defer rm.runMu.Unlock()
	rm.stopRunnersLocked()
}

// stopRunnersLocked is stopRunners for a caller holding runMu.
func (rm *readModels) stopRunnersLocked() {
	rm.runCancel()
	rm.runWG.Wait()
}

// rebuild empties the models and feeds them again from every source's
// first message, with fresh projections; between the old projections'
// stop and the new ones' start it runs during (which replaces a stream,
// say, and deletes the checkpoint the old home projection left: a
// checkpoint would be loaded). Queries meanwhile answer from the models
// as far as they are rebuilt, with the positions to say how far; a
// min_position waits. The projections start again even if during fails.
func (rm *readModels) rebuild(ctx context.Context, during func(context.Context) error) error {
	rm.runMu.Lock()
	defer rm.runMu.Unlock()
	rm.stopRunnersLocked()
	err := during(ctx)
	rm.models.Reset()
	rm.homeMu.Lock()
	clear(rm.home)
	rm.homeMu.Unlock()
	for _, src := range rm.sources {
		runner, nerr := rm.newRunner(src)
		if nerr != nil {
			// Not expected (the options were valid at start): go on with
			// the old one, which continues from its position.
			rm.log.Error().Err(nerr).Str("region", src.region).Msg("rebuild: new projection")
			continue
		}
		src.current.Store(runner)
	}
	rm.startRunners()
	return err
}

// handler feeds the shared models from region's stream. Only the home
// region's events and skips move the models' own position.
func (rm *readModels) handler(region string) projection.Handler {
	if region == rm.region {
		apply := projection.Apply(rm.models) // one shared fold; Models keeps the commit's trace for the board
		return func(ctx context.Context, ev projection.Event) error {
			err := apply(ctx, ev)
			rm.checkBroken()
			return err
		}
	}
	return func(_ context.Context, ev projection.Event) error {
		if len(ev.Events) == 0 {
			return nil // an undecodable message of a peer's stream: the source's runner moves on
		}
		rm.homeMu.Lock()
		rm.home[ev.Pool] = region
		rm.homeMu.Unlock()
		rm.models.Apply(ev.Pool, ev.Seq, ev.Events...)
		rm.checkBroken()
		return nil
	}
}

// checkBroken wakes repairReadModels once the models are broken.
func (rm *readModels) checkBroken() {
	if rm.models.Broken() != nil {
		rm.brokenOnce.Do(func() { close(rm.broken) })
	}
}

// repairReadModels waits until the models are broken (a pool loaded from
// the checkpoint did not decode: views.Models.Broken), then deletes the
// checkpoint and rebuilds them from the streams, once, while the service
// goes on (queries answer with the positions to say how far the rebuild
// has got). Without it the models would stop following that pool, and the
// next start would load the same checkpoint.
func (a *app) repairReadModels(ctx context.Context, rm *readModels) {
	select {
	case <-ctx.Done():
		return
	case <-rm.broken:
	}
	rm.log.Error().Err(rm.models.Broken()).Msg("read models broken: deleting the checkpoint and rebuilding them from the streams")
	err := rm.rebuild(ctx, func(ctx context.Context) error {
		if a.views == nil {
			return nil
		}
		return a.views.Delete(ctx, streams.StreamName(a.cfg.Region))
	})
	if err != nil {
		rm.log.Error().Err(err).Msg("read models: deleting the broken checkpoint")
	}
}

// homeOf returns the home region of a pool the read models know.
func (rm *readModels) homeOf(pool string) string {
	rm.homeMu.RLock()
	defer rm.homeMu.RUnlock()
	if h, ok := rm.home[pool]; ok {
		return h
	}
	return rm.region
}

// positions returns how far each source has been applied. Read before a
// query, it is a lower bound of what the answer reflects.
func (rm *readModels) positions() views.Positions {
	p := views.Positions{Home: rm.region, Regions: make(map[string]uint64, len(rm.sources))}
	for _, src := range rm.sources {
		p.Regions[src.region] = src.runner().Position()
	}
	return p
}

// sweepLapsed releases, every interval, the lapsed holds of the pools
// this instance writes now: its own region's unless fenced, and those of
// regions promoted here. Each expiry goes through the fencing gate like
// any write (localPools), so a fenced region never sweeps into its stream.
func (a *app) sweepLapsed(ctx context.Context, rm *readModels, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	local := localPools{a}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, pool := range rm.availability.LapsedPools(a.now().Add(-interval / 2)) {
			a.w.gate.RLock()
			_, writing := a.w.writing[rm.homeOf(pool)]
			a.w.gate.RUnlock()
			if !writing {
				continue // swept by the region that writes it
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := local.Execute(cctx, pool, capacity.Expire{})
			cancel()
			if err != nil && ctx.Err() == nil {
				a.log.Warn().Err(err).Str("pool", pool).Msg("sweeping lapsed holds")
			}
		}
	}
}

// instance names this process among the instances of a region, for its
// consumer names: --instance, or the host name and the HTTP port it bound
// (not the one asked for: every ":0" instance would share a name).
func (a *app) instance() string {
	if a.cfg.Instance != "" {
		return a.cfg.Instance
	}
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(a.ln.Addr().String())
	return host + "-" + port
}

// waitFor waits until the read models reflect every position asked, as a
// client asked with min_position; the key "" is this region.
func (rm *readModels) waitFor(ctx context.Context, minPos views.MinPositions) error {
	for region, position := range minPos {
		if region == "" {
			region = rm.region
		}
		src := rm.source(region)
		if src == nil {
			return capacity.Errorf(capacity.EINVALID, "min_position names region %q, which this region does not read (not in --peer-regions)", region)
		}
		if position == 0 {
			continue
		}
		if err := src.runner().WaitFor(ctx, position); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return capacity.Errorf(capacity.EUNAVAILABLE, "read model of region %s has not reached position %d yet (at %d)", region, position, src.runner().Position())
			}
			return err
		}
	}
	return nil
}

// source returns the source of region, nil if none.
func (rm *readModels) source(region string) *source {
	for _, src := range rm.sources {
		if src.region == region {
			return src
		}
	}
	return nil
}

// Availability implements web.Availability.
func (rm *readModels) Availability(ctx context.Context, q views.AvailabilityQuery, minPosition views.MinPositions) (views.AvailabilityPage, error) {
	if err := rm.waitFor(ctx, minPosition); err != nil {
		return views.AvailabilityPage{}, err
	}
	positions := rm.positions()
	page, err := rm.availability.Query(q, rm.now())
	if err != nil {
		return page, err
	}
	for i := range page.Pools {
		page.Pools[i].HomeRegion = rm.homeOf(page.Pools[i].ID)
	}
	if len(rm.sources) > 1 {
		page.Position = positions.Position()
	} else {
		positions.Regions[rm.region] = page.Position // the model's own, consistent with the page
	}
	page.Positions = positions
	return page, nil
}

// LookupReservation implements web.ReservationLookup.
func (rm *readModels) LookupReservation(ctx context.Context, id string, minPosition views.MinPositions, now time.Time) ([]views.ReservationMatch, views.Positions, error) {
	if err := rm.waitFor(ctx, minPosition); err != nil {
		return nil, views.Positions{}, err
	}
	positions := rm.positions()
	matches, position := rm.reservations.Lookup(id, now)
	if len(rm.sources) == 1 {
		positions.Regions[rm.region] = position
	}
	return matches, positions, nil
}

// readyWait bounds how long /readyz waits for the read models to catch up
// before it answers that they have not.
const readyWait = time.Second

// ready reports, for /readyz, whether the read models' projection is
// running and has caught up with the stream as it was when the instance
// started (from its checkpoint, or from sequence 1): until then queries
// would answer from a past state. It waits up to readyWait for that, so a
// probe just before the end of the catch-up does not fail. Later lag
// (traffic) does not make the instance unready: a client that must read
// its own write passes min_position, and the lag is shown under
// read_models and on /metrics.
func (rm *readModels) ready(ctx context.Context) error {
	for _, src := range rm.sources {
		st, err := src.runner().Status(ctx)
		if err != nil {
			return fmt.Errorf("read models of region %s: %w", src.region, err)
		}
		if !st.Running {
			return fmt.Errorf("read models: projection %s of region %s not running", st.Durable, src.region)
		}
	}
	if target, started := rm.homeRunner().ReadyAt(); started && !rm.homeRunner().CaughtUp() {
		wctx, cancel := context.WithTimeout(ctx, readyWait)
		defer cancel()
		if rm.homeRunner().WaitFor(wctx, target) == nil {
			return nil
		}
	}
	if _, started := rm.homeRunner().ReadyAt(); !started {
		return fmt.Errorf("read models: projection of region %s starting (loading its checkpoint)", rm.region)
	}
	if !rm.homeRunner().CaughtUp() {
		st := rm.homeRunner().Counters()
		from := "a rebuild from sequence 1"
		if cs := st.Checkpoint; cs != nil && cs.LoadedSeq > 0 {
			from = fmt.Sprintf("checkpoint at %d", cs.LoadedSeq)
		}
		return fmt.Errorf("read models catching up: at %d of %d (the stream's last sequence at start), after %s", st.Position, st.ReadyAt, from)
	}
	return nil
}

// readyDetail is what /readyz shows of the read models: the home
// projection's status as before, and per peer region its projection and
// how far its mirror lags.
func (rm *readModels) readyDetail(ctx context.Context) any {
	st, _ := rm.homeRunner().Status(ctx)
	if len(rm.sources) == 1 {
		return st
	}
	type peer struct {
		Projection projection.Status `json:"projection"`
		MirrorLag  uint64            `json:"mirror_lag"`
		LastSeq    uint64            `json:"last_seq"`
		ActiveMS   int64             `json:"mirror_active_ms"`
		Error      string            `json:"mirror_error,omitempty"`
	}
	peers := map[string]peer{}
	for _, src := range rm.sources[1:] {
		var p peer
		p.Projection, _ = src.runner().Status(ctx)
		p.ActiveMS = -1
		if ms, err := src.mirror.Status(ctx); err == nil {
			p.MirrorLag, p.LastSeq, p.Error = ms.Lag, ms.LastSeq, ms.Error
			if ms.Active >= 0 {
				p.ActiveMS = ms.Active.Milliseconds()
			}
		}
		peers[src.region] = p
	}
	return struct {
		projection.Status
		Regions map[string]peer `json:"regions"`
	}{st, peers}
}

// Figures implements natsapi.Figures (capacityd verify's read): a page of
// the pools of home region q.Home, by id, with their figures at q.At, and
// the positions read before them (a lower bound of what they reflect).
func (rm *readModels) Figures(_ context.Context, q natsapi.FiguresRequest) (natsapi.FiguresReply, error) {
	if rm.source(q.Home) == nil {
		return natsapi.FiguresReply{}, capacity.Errorf(capacity.ENOTFOUND, "region %s does not read region %s's stream (not in --peer-regions)", rm.region, q.Home)
	}
	positions := rm.positions()
	figures, next := rm.models.Figures(q.After, q.Limit, q.At, func(pool string) bool { return rm.homeOf(pool) == q.Home })
	out := natsapi.FiguresReply{Region: rm.region, At: q.At, Positions: positions.Regions, Next: next, Pools: make([]natsapi.PoolFigures, len(figures))}
	for i, f := range figures {
		out.Pools[i] = natsapi.PoolFiguresOf(q.Home, f)
	}
	return out, nil
}
