package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/web"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/capacityd/capacityd/web/ui"
)

// buildHTTP starts the write side and the read models and returns the HTTP
// handler over them. What it starts is stopped by a.close.
func (a *app) buildHTTP(ctx context.Context) (http.Handler, error) {
	metrics := pools.NewMetrics(a.reg)
	events := streams.NewPoolEvents(a.store)
	a.pools = pools.New(events, kv.NewPoolSnapshots(a.snaps, a.cfg.Region), pools.Options{
		Region:           a.cfg.Region,
		MaxBatch:         a.cfg.MaxBatch,
		BatchAcrossPools: a.cfg.BatchAcrossPools(),
		SnapshotEvery:    a.cfg.SnapshotEvery,
		IdleTimeout:      a.cfg.IdleTimeout,
		// Long enough for an fsync on a slow disk under load, short enough
		// that a lost stream leader (an R3 election takes a few seconds)
		// stalls a pool's queue for seconds, not tens of seconds.
		AppendTimeout: 3 * time.Second,
		Now:           a.now,
		Logger:        a.log.With().Str("component", "pools").Logger(),
		OnAppend:      metrics.OnAppend,
	})
	metrics.Watch(a.pools)
	rm, err := a.startReadModels(ctx)
	if err != nil {
		return nil, fmt.Errorf("read models: %w", err)
	}
	a.readModels = rm
	// Every write goes through the router: a pool another region writes is
	// forwarded to it over NATS (its service's forward operation).
	// A copy following the head elsewhere is not written here (the term
	// read next says who does).
	if !a.store.Following() {
		a.w.gate.Lock()
		a.w.writing[a.cfg.Region] = a.pools
		a.w.gate.Unlock()
	}
	local := localPools{a}
	router := natsapi.NewRouter(local, a.nc, a.cfg.Region, a.writerOf, a.cfg.ForwardTimeout)
	// Terms first, before any write is taken: a region promoted elsewhere
	// starts fenced; then every termsRefresh.
	a.refreshTerms(ctx)
	termsCtx, stopTerms := context.WithCancel(context.Background())
	var termsDone sync.WaitGroup
	termsDone.Go(func() { a.runTerms(termsCtx) })
	a.stops = append(a.stops, func() { stopTerms(); termsDone.Wait() })
	if err := a.loadAccess(); err != nil {
		return nil, err
	}
	planner, err := ui.New(ui.Config{
		Access:       a.access,
		Pools:        router,
		History:      events,
		Board:        rm.board,
		Availability: rm.availability,
		Verdicts:     a,
		Now:          a.now,
		Logger:       a.log.With().Str("component", "ui").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("planner UI: %w", err)
	}
	handler := web.NewServer(web.Config{
		Access:       a.access,
		UI:           planner,
		Pools:        router,
		History:      events,
		Availability: rm,
		Reservations: rm,
		Now:          a.now,
		Logger:       a.log,
		Tracing:      a.stopTracing != nil,
		Registry:     a.reg,
		Regions:      a,
		Ready:        a.ready,
		ReadyDetail: func(ctx context.Context) any {
			return rm.readyDetail(ctx)
		},
	})
	svc, err := natsapi.New(a.nc, natsapi.Config{
		Region:       a.cfg.Region,
		Pools:        router,
		Local:        local,
		Writer:       a.writerOf,
		Fence:        a.Fence,
		Availability: rm,
		Figures:      rm,
		Logger:       a.log.With().Str("component", "natsapi").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("NATS service: %w", err)
	}
	// Stopped before the pools service (stops run first, newest first), so
	// every request it took gets its answer.
	a.stops = append(a.stops, func() {
		if err := svc.Close(); err != nil {
			a.log.Warn().Err(err).Msg("NATS service stop")
		}
	})
	return handler, nil
}

// loadAccess reads --tokens, or warns that every route is open.
func (a *app) loadAccess() error {
	if a.cfg.Tokens == "" {
		a.access = web.NewAccess(nil, 0)
		a.log.Warn().Msg("no --tokens: every route is open to anyone who can reach " + a.cfg.HTTP + " (fine for development; see README, Access)")
		return nil
	}
	tokens, err := web.LoadTokens(a.cfg.Tokens)
	if err != nil {
		return fmt.Errorf("--tokens: %w", err)
	}
	a.tokens = tokens
	a.access = web.NewAccess(tokens, float64(a.cfg.RateLimit))
	a.log.Info().Str("file", a.cfg.Tokens).Int("tokens", tokens.Len()).Int("rate_limit", a.cfg.RateLimit).Msg("access: bearer tokens required")
	return nil
}

// Reload reads the token file again (what SIGHUP does). A file that does
// not load leaves the tokens in force and is reported.
func (a *app) Reload() error {
	if a.tokens == nil {
		return nil
	}
	if err := a.tokens.Reload(); err != nil {
		a.log.Error().Err(err).Msg("tokens not reloaded; the previous ones stay in force")
		return err
	}
	a.log.Info().Str("file", a.cfg.Tokens).Int("tokens", a.tokens.Len()).Msg("tokens reloaded")
	return nil
}

// ready reports whether the service can take writes: NATS connected and
// JetStream answering.
func (a *app) ready() error {
	if !a.nc.IsConnected() {
		return fmt.Errorf("NATS disconnected (%s)", a.nc.Status())
	}
	if a.readModels != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return a.readModels.ready(ctx)
	}
	return nil
}
