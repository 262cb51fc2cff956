package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/prometheus/client_golang/prometheus"
)

// regionMirror is this domain's copy of one peer region: its events and
// its snapshots.
type regionMirror struct {
	events *streams.Mirror
	snaps  *kv.MirroredSnapshots
}

// openMirrors ensures a mirror of every peer region's event stream and
// snapshots. A peer need not be up: the server keeps retrying its mirrors.
func (a *app) openMirrors(ctx context.Context) error {
	a.mirrors = a.mirrors[:0]
	for _, peer := range a.cfg.PeerRegions {
		events, err := streams.EnsureMirror(ctx, a.js, peer, streams.WithReplicas(a.cfg.Replicas))
		if err != nil {
			return fmt.Errorf("mirror of region %s: %w", peer, err)
		}
		snaps, err := kv.EnsureMirror(ctx, a.js, kv.DefaultBucket, peer, a.cfg.Replicas)
		if err != nil {
			return fmt.Errorf("snapshot mirror of region %s: %w", peer, err)
		}
		a.mirrors = append(a.mirrors, regionMirror{events: events, snaps: snaps})
	}
	return nil
}

// writerOf names the region that writes pool now: its home region (a pool
// this region's read models know from a peer's stream), or this region for
// its own pools and pools nobody knows yet (a define makes them ours).
func (a *app) writerOf(pool string) string {
	home := a.cfg.Region
	if a.readModels != nil {
		home = a.readModels.homeOf(pool)
	}
	writer, _ := a.writerOfRegion(home)
	return writer
}

// regionProbeTimeout bounds how long GET /v1/regions waits for a peer's
// JetStream to answer before calling it unreachable.
const regionProbeTimeout = 500 * time.Millisecond

// Regions implements web.Regions: this region and every peer, who writes
// their pools, and how far this region's copy of each is.
func (a *app) Regions(ctx context.Context) (capacity.RegionsReport, error) {
	rep := capacity.RegionsReport{Region: a.cfg.Region}
	last, err := a.store.StreamLastSeq(ctx)
	if err != nil {
		return rep, capacity.Errorf(capacity.EUNAVAILABLE, "this region's stream does not answer")
	}
	self := capacity.RegionStatus{Name: a.cfg.Region, Reachable: true, LastSeq: last, MirrorActive: -1}
	self.Writer, self.Epoch = a.writerOfRegion(a.cfg.Region)
	a.w.gate.RLock()
	self.Tail = a.w.tail
	a.w.gate.RUnlock()
	if a.readModels != nil {
		self.ReadPosition = a.readModels.homeRunner().Position()
	}
	rep.Regions = append(rep.Regions, self)
	statuses := make([]capacity.RegionStatus, len(a.mirrors))
	var wg sync.WaitGroup
	for i, m := range a.mirrors {
		wg.Go(func() { statuses[i] = a.peerStatus(ctx, m) })
	}
	wg.Wait()
	rep.Regions = append(rep.Regions, statuses...)
	verdicts := a.Verdicts(ctx)
	for i := range rep.Regions {
		for j := range verdicts {
			if verdicts[j].Region == rep.Regions[i].Name {
				rep.Regions[i].Verify = &verdicts[j]
			}
		}
	}
	return rep, nil
}

// Verdicts returns capacityd verify's last verdict on this region and on
// each peer, as published in this domain (kv.VerifyBucket); a region never
// verified, or a bucket that does not answer within regionProbeTimeout,
// has none.
func (a *app) Verdicts(ctx context.Context) []capacity.VerifyVerdict {
	ctx, cancel := context.WithTimeout(ctx, regionProbeTimeout)
	defer cancel()
	store := kv.NewVerdicts(a.js)
	var out []capacity.VerifyVerdict
	for _, region := range append([]string{a.cfg.Region}, a.cfg.PeerRegions...) {
		v, ok, err := store.Get(ctx, region)
		if err != nil {
			a.log.Debug().Err(err).Str("region", region).Msg("verify verdict unreadable")
			continue
		}
		if ok {
			out = append(out, v)
		}
	}
	return out
}

// peerStatus reports one peer: its copy here and whether its JetStream
// domain answers over the leaf link now.
func (a *app) peerStatus(ctx context.Context, m regionMirror) capacity.RegionStatus {
	region := m.events.Region()
	st := capacity.RegionStatus{Name: region, MirrorActive: -1}
	st.Writer, st.Epoch = a.writerOfRegion(region)
	ctx, cancel := context.WithTimeout(ctx, regionProbeTimeout)
	defer cancel()
	st.Reachable = streams.DomainReachable(ctx, a.nc, region)
	ms, err := m.events.Status(ctx)
	if err != nil {
		st.Error = "mirror status unavailable"
		return st
	}
	st.LastSeq, st.MirrorLag, st.MirrorActive, st.Error = ms.LastSeq, ms.Lag, ms.Active, ms.Error
	if a.readModels != nil {
		if src := a.readModels.source(region); src != nil {
			st.ReadPosition = src.runner().Position()
		}
	}
	return st
}

// sourceCollector exports, per source region, the read models' position
// and the mirror's lag and activity, read when scraped.
type sourceCollector struct{ rm *readModels }

var (
	descSourcePosition = prometheus.NewDesc("capacity_region_readmodel_position",
		"Sequence of the region's stream (this domain's copy) the read models reflect.", []string{"region"}, nil)
	descMirrorLag = prometheus.NewDesc("capacity_region_mirror_lag",
		"Messages the region's stream has that this domain's mirror of it has not (as last reported).", []string{"region"}, nil)
	descMirrorLastSeq = prometheus.NewDesc("capacity_region_last_seq",
		"Last sequence of this domain's copy of the region's stream.", []string{"region"}, nil)
	descMirrorActive = prometheus.NewDesc("capacity_region_mirror_active_seconds",
		"Seconds since the mirror last heard from the region (-1: never).", []string{"region"}, nil)
	descReadLag = prometheus.NewDesc("capacity_region_readmodel_lag",
		"Last sequence of this domain's copy of the region's stream minus the read models' position.", []string{"region"}, nil)
)

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSourcePosition, descMirrorLag, descMirrorLastSeq, descMirrorActive, descReadLag} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, src := range c.rm.sources {
		pos := src.runner().Position()
		ch <- prometheus.MustNewConstMetric(descSourcePosition, prometheus.GaugeValue, float64(pos), src.region)
		if lag, err := src.runner().Lag(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(descReadLag, prometheus.GaugeValue, float64(lag), src.region)
		}
		if src.mirror == nil {
			continue
		}
		st, err := src.mirror.Status(ctx)
		if err != nil {
			continue
		}
		active := -1.0
		if st.Active >= 0 {
			active = st.Active.Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descMirrorLag, prometheus.GaugeValue, float64(st.Lag), src.region)
		ch <- prometheus.MustNewConstMetric(descMirrorLastSeq, prometheus.GaugeValue, float64(st.LastSeq), src.region)
		ch <- prometheus.MustNewConstMetric(descMirrorActive, prometheus.GaugeValue, active, src.region)
	}
}
