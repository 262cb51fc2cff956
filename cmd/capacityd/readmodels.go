package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/prometheus/client_golang/prometheus"
)

// readModels are the in-memory read models of this instance and the
// projection that feeds them from the event stream.
type readModels struct {
	models       *views.Models
	availability *views.Availability
	reservations *views.Reservations
	board        *views.Board
	runner       *projection.Runner
	now          func() time.Time
}

// startReadModels creates the models and runs their projection until the
// returned stop function is called.
func (a *app) startReadModels(ctx context.Context) (*readModels, error) {
	models := views.New() // one copy of each pool, shared by the three models
	rm := &readModels{
		models:       models,
		availability: models.Availability,
		reservations: models.Reservations,
		board:        models.Board,
		now:          a.now,
	}
	durable := projection.DurableName("views", a.cfg.Region, a.instance())
	opts := []projection.Option{projection.WithLogger(a.log.With().Str("component", "projection").Str("durable", durable).Logger())}
	if a.views != nil {
		opts = append(opts, projection.WithCheckpoints(a.views, models, a.cfg.CheckpointEvery, a.cfg.CheckpointInterval))
	}
	runner, err := projection.New(a.js, a.store.StreamName(), durable, projection.Apply(models), opts...)
	if err != nil {
		return nil, err
	}
	rm.runner = runner
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := runner.Run(runCtx); err != nil {
			a.log.Error().Err(err).Str("durable", durable).Msg("projection stopped")
		}
	})
	wg.Go(func() { a.pools.SweepLapsed(runCtx, rm.availability, a.cfg.SweepEvery) })
	a.stops = append(a.stops, func() { cancel(); wg.Wait() })

	a.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "capacity_readmodel_position", Help: "Stream sequence the read models reflect."},
			func() float64 { return float64(runner.Position()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "capacity_readmodel_lag", Help: "Stream last sequence minus the read models' position."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				lag, err := runner.Lag(ctx)
				if err != nil {
					return -1
				}
				return float64(lag)
			}),
	)
	return rm, nil
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

// waitFor waits until the read models reflect position, as a client
// asked with min_position.
func (rm *readModels) waitFor(ctx context.Context, position uint64) error {
	if position == 0 {
		return nil
	}
	if err := rm.runner.WaitFor(ctx, position); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return capacity.Errorf(capacity.EUNAVAILABLE, "read model has not reached position %d yet (at %d)", position, rm.runner.Position())
		}
		return err
	}
	return nil
}

// Availability implements web.Availability.
func (rm *readModels) Availability(ctx context.Context, q views.AvailabilityQuery, minPosition uint64) (views.AvailabilityPage, error) {
	if err := rm.waitFor(ctx, minPosition); err != nil {
		return views.AvailabilityPage{}, err
	}
	return rm.availability.Query(q, rm.now())
}

// LookupReservation implements web.ReservationLookup.
func (rm *readModels) LookupReservation(ctx context.Context, id string, minPosition uint64, now time.Time) ([]views.ReservationMatch, uint64, error) {
	if err := rm.waitFor(ctx, minPosition); err != nil {
		return nil, 0, err
	}
	matches, position := rm.reservations.Lookup(id, now)
	return matches, position, nil
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
	st, err := rm.runner.Status(ctx)
	if err != nil {
		return fmt.Errorf("read models: %w", err)
	}
	if !st.Running {
		return fmt.Errorf("read models: projection %s not running", st.Durable)
	}
	if target, started := rm.runner.ReadyAt(); started && !rm.runner.CaughtUp() {
		wctx, cancel := context.WithTimeout(ctx, readyWait)
		defer cancel()
		if rm.runner.WaitFor(wctx, target) == nil {
			return nil
		}
	}
	if _, started := rm.runner.ReadyAt(); !started {
		return fmt.Errorf("read models: projection %s starting (loading its checkpoint)", st.Durable)
	}
	if !rm.runner.CaughtUp() {
		st = rm.runner.Counters()
		from := "a rebuild from sequence 1"
		if cs := st.Checkpoint; cs != nil && cs.LoadedSeq > 0 {
			from = fmt.Sprintf("checkpoint at %d", cs.LoadedSeq)
		}
		return fmt.Errorf("read models catching up: at %d of %d (the stream's last sequence at start), after %s", st.Position, st.ReadyAt, from)
	}
	return nil
}
