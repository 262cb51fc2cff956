package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/web"
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
	planner, err := ui.New(ui.Config{
		Pools:        a.pools,
		History:      events,
		Board:        rm.board,
		Availability: rm.availability,
		Now:          a.now,
		Logger:       a.log.With().Str("component", "ui").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("planner UI: %w", err)
	}
	handler := web.NewServer(web.Config{
		UI:           planner,
		Pools:        a.pools,
		History:      events,
		Availability: rm,
		Reservations: rm,
		Now:          a.now,
		Logger:       a.log,
		Registry:     a.reg,
		Regions:      a,
		Ready:        a.ready,
		ReadyDetail: func(ctx context.Context) any {
			return rm.readyDetail(ctx)
		},
	})
	return handler, nil
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
