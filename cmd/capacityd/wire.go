package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/web"
)

// buildHTTP starts the write side and the read models and returns the HTTP
// handler over them. What it starts is stopped by a.close.
func (a *app) buildHTTP(ctx context.Context) (http.Handler, error) {
	metrics := web.NewMetrics(a.reg)
	events := streams.NewPoolEvents(a.store)
	a.pools = pools.New(events, kv.NewPoolSnapshots(a.snaps, a.cfg.Region), pools.Options{
		MaxBatch:      a.cfg.MaxBatch,
		SnapshotEvery: a.cfg.SnapshotEvery,
		Logger:        a.log.With().Str("component", "pools").Logger(),
		OnAppend:      metrics.OnAppend,
	})
	handler := web.NewServer(web.Config{
		Pools:    a.pools,
		History:  events,
		Logger:   a.log,
		Registry: a.reg,
		Metrics:  metrics,
		Ready:    a.ready,
	})
	return handler, nil
}

// ready reports whether the service can take writes: NATS connected and
// JetStream answering.
func (a *app) ready() error {
	if !a.nc.IsConnected() {
		return fmt.Errorf("NATS disconnected (%s)", a.nc.Status())
	}
	return nil
}
