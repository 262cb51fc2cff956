package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/capacityd/capacityd/cmd/capacityd/internal/loadgen"
	"github.com/capacityd/capacityd/cmd/capacityd/internal/pgpeer"
	"github.com/rs/zerolog"
)

// peerLoad is the load the PostgreSQL peer gets for a scenario, the one
// that scenario's ratio to it is taken against: hot-pool's holds for
// hot-pool and durable (the same load, durable only changes capacityd's
// sync), many-pools' for many-pools. Other scenarios need routes the peer
// does not have (reads, confirms, bookings) or another transport (nats),
// and get no ratio.
func peerLoad(scenario string) (string, bool) {
	switch scenario {
	case loadgen.HotPool, loadgen.Durable:
		return loadgen.HotPool, true
	case loadgen.ManyPools:
		return loadgen.ManyPools, true
	}
	return "", false
}

// peerLoads lists the loads the PostgreSQL peer gets in this run.
func (b *benchRun) peerLoads() []string {
	var loads []string
	for _, name := range b.opts.Scenarios {
		if load, ok := peerLoad(name); ok && !slices.Contains(loads, load) {
			loads = append(loads, load)
		}
	}
	return loads
}

// peerRuns counts the measured runs of the PostgreSQL peer.
func (b *benchRun) peerRuns() int { return len(b.peerLoads()) }

// postgresPeers measures the PostgreSQL peer with each load the scenarios
// compare against, once per load, on one peer service.
func (b *benchRun) postgresPeers(ctx context.Context) error {
	loads := b.peerLoads()
	if len(loads) == 0 {
		b.note("--postgres given, but none of the scenarios has a load the PostgreSQL peer serves (hot-pool, many-pools, durable): no peer ran")
		return nil
	}
	log, err := os.Create(filepath.Join(b.tmp, "postgres.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	b.status("peer: postgres, starting (%d connections)", b.opts.Clients)
	peer, err := pgpeer.Start(ctx, pgpeer.Config{URL: b.opts.Postgres, Conns: b.opts.Clients,
		Log: zerolog.New(log).Level(zerolog.WarnLevel).With().Timestamp().Logger()})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := peer.Close(); cerr != nil {
			b.note("postgres peer: %v", cerr)
		}
	}()
	d := peer.Durability()
	b.note("the postgres peer is a Go HTTP service in the bench process on PostgreSQL %s (fsync %s, synchronous_commit %s), one transaction per hold with a row lock on the pool (cmd/capacityd/internal/pgpeer), %d connections, tables in scratch schema %s, dropped afterwards; the server's CPU counts under \"others\"",
		d.ServerVersion, d.Fsync, d.SynchronousCommit, b.opts.Clients, peer.Schema())
	for _, load := range loads {
		pr, err := b.postgresPeer(ctx, peer, load)
		if err != nil {
			return fmt.Errorf("%s: %w", load, err)
		}
		b.report.Peers = append(b.report.Peers, pr)
	}
	return nil
}

// postgresPeer drives one load at the peer, as scenario does at capacityd,
// and checks its pools afterwards.
func (b *benchRun) postgresPeer(ctx context.Context, peer *pgpeer.Service, load string) (loadgen.PeerReport, error) {
	d := peer.Durability()
	pr := loadgen.PeerReport{Peer: loadgen.PeerPostgres, Scenario: load, Durable: d.Durable()}
	client := loadgen.NewClient(peer.URL(), b.opts.Clients)
	defer client.Close()
	wl, err := loadgen.NewWorkload(loadgen.WorkloadConfig{
		Scenario: load, Client: client, Clients: b.opts.Clients, Pools: b.opts.Pools, Region: b.opts.Region,
		Prefix: "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36),
	})
	if err != nil {
		return pr, err
	}
	pr.Pools = wl.Pools()
	b.status("peer: postgres, %s: defining %d pools", load, pr.Pools)
	if err := wl.Setup(ctx); err != nil {
		return pr, err
	}
	b.status("peer: postgres, %s: running", load)
	res := loadgen.Run(ctx, b.runConfig("postgres "+load), wl.Op)
	if err := ctx.Err(); err != nil {
		return pr, err
	}
	sync := SyncAlways
	if !pr.Durable {
		sync = "off"
		pr.Notes = append(pr.Notes, fmt.Sprintf("NOT durable: the server runs with fsync %s, synchronous_commit %s; compare it with --sync interval, not always", d.Fsync, d.SynchronousCommit))
	}
	pr.Figure = loadgen.FigureOf(res, sync)
	pr.Name = loadgen.PeerPostgres
	b.status("peer: postgres, %s: checking %d pools", load, pr.Pools)
	check := wl.Verify(ctx)
	if err := ctx.Err(); err != nil {
		return pr, err
	}
	pr.Correctness = &check
	return pr, nil
}

// comparePeers sets a scenario's ratio to the peer that got its load.
func (b *benchRun) comparePeers(sr *loadgen.ScenarioReport) {
	load, ok := peerLoad(sr.Name)
	if !ok || sr.Skipped {
		return
	}
	if p, ok := b.report.Peer(loadgen.PeerPostgres, load); ok && p.OpsPerSec > 0 {
		sr.Ratios[loadgen.PeerPostgres] = sr.OpsPerSec / p.OpsPerSec
		if p.Durable && sr.Sync != SyncAlways {
			sr.Notes = append(sr.Notes, fmt.Sprintf("vs postgres sets this run's --sync %s against a peer that flushes every commit to disk: for like with like, use --sync always", sr.Sync))
		}
	}
}
