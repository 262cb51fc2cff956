package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/nats-io/nats.go"
)

// writers is who writes which region's pools, as this instance knows it:
// the highest term of each region (kv.Terms, its own bucket and every
// reachable peer's), and the write sides of the regions it writes itself
// (its own unless fenced, and those promoted here). gate orders writes
// against fencing: a write holds it shared, a fence exclusively, so once
// a fence returns no write of the fenced region is in flight.
type writers struct {
	gate    sync.RWMutex
	terms   map[string]kv.Term
	writing map[string]*pools.Service
	tail    *capacity.FencedTail
	stops   []func() // write sides started by promotions, closed with the app
}

// termsRefresh is how often the terms are read again (own bucket and
// peers'): a region promoted elsewhere while this one ran is fenced
// within about this long of the new term becoming readable here.
const termsRefresh = time.Second

// writerOfRegion names the region that writes region's pools now.
func (a *app) writerOfRegion(region string) (string, uint64) {
	a.w.gate.RLock()
	defer a.w.gate.RUnlock()
	if t, ok := a.w.terms[region]; ok && t.Writer != "" {
		return t.Writer, t.Epoch
	}
	return region, 0
}

// refreshTerms reads every region's term from this domain and each peer
// domain that answers, and applies the highest.
func (a *app) refreshTerms(ctx context.Context) {
	regions := append([]string{a.cfg.Region}, a.cfg.PeerRegions...)
	for _, region := range regions {
		best, err := a.readTerm(ctx, region)
		if err != nil {
			a.log.Warn().Err(err).Str("region", region).Msg("terms: own bucket")
			continue
		}
		a.applyTerm(ctx, best)
	}
}

// applyTerm takes a term at least as high as the known one: a term that
// moves this region's own pools elsewhere fences them (and reports the
// tail), one that names this region writer of another's starts writing it
// (after a restart of the promoted region).
func (a *app) applyTerm(ctx context.Context, t kv.Term) {
	a.w.gate.RLock()
	cur, known := a.w.terms[t.Region]
	_, writing := a.w.writing[t.Region]
	a.w.gate.RUnlock()
	if known && t.Epoch < cur.Epoch {
		return
	}
	switch {
	case t.Writer != a.cfg.Region && writing:
		a.fence(ctx, t)
	case t.Writer == a.cfg.Region && !writing && t.Region != a.cfg.Region:
		if err := a.startWriting(ctx, t); err != nil {
			a.log.Error().Err(err).Str("region", t.Region).Msg("terms: this region is the writer but cannot write")
		}
	default:
		a.w.gate.Lock()
		a.w.terms[t.Region] = t
		a.w.gate.Unlock()
	}
}

// fence stops this instance writing region t.Region's pools: it waits for
// the writes in flight, then forwards to t.Writer. For its own region it
// keeps the term in its own bucket (a restart stays fenced without the
// peers) and reports the tail after the new writer's recovery point.
func (a *app) fence(ctx context.Context, t kv.Term) {
	a.w.gate.Lock()
	delete(a.w.writing, t.Region)
	a.w.terms[t.Region] = t
	a.w.gate.Unlock()
	ev := a.log.Warn().Str("region", t.Region).Str("writer", t.Writer).Uint64("epoch", t.Epoch).Str("mode", t.Mode)
	if t.Region == a.cfg.Region {
		if err := a.terms.Raise(ctx, t); err != nil && capacity.ErrorCode(err) != capacity.ECONFLICT {
			a.log.Error().Err(err).Msg("terms: fenced, but the term is not stored here")
		}
		if last, err := a.store.StreamLastSeq(ctx); err == nil && last > t.From {
			tail := &capacity.FencedTail{Epoch: t.Epoch, Writer: t.Writer, FirstSeq: t.From + 1, LastSeq: last}
			a.w.gate.Lock()
			a.w.tail = tail
			a.w.gate.Unlock()
			ev = ev.Uint64("tail_first_seq", tail.FirstSeq).Uint64("tail_last_seq", tail.LastSeq).Uint64("tail_count", tail.Count())
		}
	}
	ev.Msg("fenced: another region writes these pools now; writes are forwarded to it (a tail, if any, stays in this region's stream, not merged)")
}

// startWriting opens the promoted copy of t.Region's stream as a store
// and starts a write side over it.
func (a *app) startWriting(ctx context.Context, t kv.Term) error {
	store, err := streams.New(ctx, a.js, t.Region, a.storeOptions()...)
	if err != nil {
		return err
	}
	svc := pools.New(streams.NewPoolEvents(store), kv.NewPoolSnapshots(a.snaps, t.Region), pools.Options{
		Region:        t.Region,
		MaxBatch:      a.cfg.MaxBatch,
		SnapshotEvery: a.cfg.SnapshotEvery,
		IdleTimeout:   a.cfg.IdleTimeout,
		AppendTimeout: 3 * time.Second,
		Now:           a.now,
		Logger:        a.log.With().Str("component", "pools").Str("home", t.Region).Logger(),
	})
	if t.Fenced != nil {
		// Before the first write: the read models must not keep the
		// fenced commit's effects (this instance's, and every other
		// instance of this region's, which applies the term; at a start,
		// after the checkpoint that may hold them is loaded).
		if err := a.refoldFenced(ctx, store, t); err != nil {
			return err
		}
	}
	a.w.gate.Lock()
	a.w.writing[t.Region] = svc
	a.w.terms[t.Region] = t
	a.w.stops = append(a.w.stops, svc.Close)
	a.w.gate.Unlock()
	a.log.Info().Str("region", t.Region).Uint64("epoch", t.Epoch).Uint64("from", t.From).Msg("writing the pools of another region (promoted here)")
	return nil
}

// peerWaitAtStart bounds how long a start waits for the peer regions to
// answer before it reads the terms: a region returning after a takeover
// must see the new term before it takes a write, and its leaf links take
// a moment to come up. A peer still silent after it is read later (every
// termsRefresh); until then this region writes its pools (README, Regions).
const peerWaitAtStart = 5 * time.Second

// waitPeers waits until every peer region's JetStream answers, or
// peerWaitAtStart passes.
func (a *app) waitPeers(ctx context.Context) {
	deadline := time.Now().Add(peerWaitAtStart)
	for _, peer := range a.cfg.PeerRegions {
		for time.Now().Before(deadline) {
			pctx, cancel := context.WithTimeout(ctx, regionProbeTimeout)
			ok := streams.DomainReachable(pctx, a.nc, peer)
			cancel()
			if ok {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// runTerms reads the terms at start and every termsRefresh until ctx ends.
func (a *app) runTerms(ctx context.Context) {
	a.refreshTerms(ctx)
	tick := time.NewTicker(termsRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.refreshTerms(ctx)
			a.promoteMu.Lock()
			a.followAll(ctx, false)
			a.promoteMu.Unlock()
		}
	}
}

// fenceRequest is what a promoting region asks the writer (natsapi's
// fence operation): stop writing Region's pools, Writer takes them at
// Epoch.
type fenceRequest struct {
	Region string `json:"region"`
	Writer string `json:"writer"`
	Epoch  uint64 `json:"epoch"`
}

// Fence is the writer's side of a handover (natsapi.Config.Fence): it
// stops writing its own pools once the writes in flight are stored, keeps
// the new term and answers its stream's last sequence, which the new
// writer's mirror must reach before it writes.
func (a *app) Fence(ctx context.Context, data []byte) (any, error) {
	var req fenceRequest
	if err := json.Unmarshal(data, &req); err != nil || req.Region == "" || req.Writer == "" || req.Epoch == 0 {
		return nil, capacity.Errorf(capacity.EINVALID, "fence: want {region, writer, epoch}")
	}
	a.w.gate.Lock()
	cur, known := a.w.terms[req.Region]
	_, writing := a.w.writing[req.Region]
	if !writing || known && cur.Epoch >= req.Epoch {
		a.w.gate.Unlock()
		return nil, capacity.Errorf(capacity.ECONFLICT, "region %s does not write its pools at an epoch below %d", req.Region, req.Epoch)
	}
	// Held: no write of this region is in flight from here on.
	c, err := streams.Copy(ctx, a.js, req.Region)
	last := c.LastSeq
	if err == nil {
		t := kv.Term{Region: req.Region, Writer: req.Writer, Epoch: req.Epoch, From: last, Mode: "handover", At: a.now().UTC()}
		if err = a.terms.Raise(ctx, t); err == nil {
			delete(a.w.writing, req.Region)
			a.w.terms[req.Region] = t
		}
	}
	a.w.gate.Unlock()
	if err != nil {
		return nil, err
	}
	a.log.Warn().Str("region", req.Region).Str("writer", req.Writer).Uint64("epoch", req.Epoch).Uint64("last_seq", last).Msg("handover: fenced; writes are forwarded to the new writer")
	return map[string]uint64{"last_seq": last}, nil
}

// handoverWait bounds how long a handover waits for the mirror to reach
// the old writer's last sequence.
const handoverWait = 30 * time.Second

// Promote makes this region the writer of region's pools under a new
// epoch (POST /v1/admin/regions/{region}/promote): a handover when the
// writer answers, else a takeover of the mirror as it is.
func (a *app) Promote(ctx context.Context, region string) (capacity.Promotion, error) {
	start := time.Now()
	var mirror *streams.Mirror
	for _, m := range a.mirrors {
		if m.events.Region() == region {
			mirror = m.events
		}
	}
	if mirror == nil && region != a.cfg.Region {
		return capacity.Promotion{}, capacity.Errorf(capacity.ENOTFOUND, "region %s is not a peer of region %s (--peer-regions)", region, a.cfg.Region)
	}
	a.promoteMu.Lock()
	defer a.promoteMu.Unlock()
	a.refreshTerms(ctx)
	writer, epoch := a.writerOfRegion(region)
	if writer == a.cfg.Region {
		return capacity.Promotion{}, capacity.Errorf(capacity.ECONFLICT, "region %s writes the pools of region %s already (epoch %d)", a.cfg.Region, region, epoch)
	}
	if writer != region || region == a.cfg.Region {
		// Failback (or a chain of promotions): this region's copy must be
		// a mirror of the writer's, which follow sets up once the writer
		// promoted its copy.
		if region == a.cfg.Region {
			var err error
			if mirror, err = streams.EnsureMirrorFrom(ctx, a.js, region, writer, streams.WithReplicas(a.cfg.Replicas)); err != nil {
				return capacity.Promotion{}, err
			}
		}
		st, err := mirror.Status(ctx)
		if err != nil {
			return capacity.Promotion{}, err
		}
		if st.Origin != writer {
			return capacity.Promotion{}, capacity.Errorf(capacity.ECONFLICT, "region %s's copy of region %s's stream does not follow the writer, region %s, yet (it does within about %v of the writer's promotion becoming readable here): retry", a.cfg.Region, region, writer, termsRefresh)
		}
	}
	p := capacity.Promotion{Region: region, Writer: a.cfg.Region, Epoch: epoch + 1, Mode: "takeover"}
	body, _ := json.Marshal(fenceRequest{Region: region, Writer: a.cfg.Region, Epoch: p.Epoch})
	fctx, cancel := context.WithTimeout(ctx, a.cfg.ForwardTimeout)
	reply, err := natsapi.NewClient(a.nc, writer).Request(fctx, natsapi.OpFence, nil, body, nil)
	cancel()
	var refusal *natsapi.Error
	switch {
	case err == nil:
		var r struct {
			LastSeq uint64 `json:"last_seq"`
		}
		if err := json.Unmarshal(reply, &r); err != nil {
			return p, fmt.Errorf("fence answer of %s: %w", writer, err)
		}
		p.Mode = "handover"
		wctx, cancel := context.WithTimeout(ctx, handoverWait)
		err = mirror.WaitFor(wctx, r.LastSeq)
		cancel()
		if err != nil {
			return p, capacity.Errorf(capacity.EUNAVAILABLE, "handover: region %s is fenced at %d but the mirror here has not caught up: %v (promote again to take over)", writer, r.LastSeq, err)
		}
	case errors.As(err, &refusal):
		return p, capacity.Errorf(capacity.ECONFLICT, "region %s refused to hand over: %s", writer, refusal.Detail)
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		// Not reachable: takeover.
	default:
		return p, err
	}
	pr, err := mirror.Promote(ctx)
	if err != nil {
		return p, err
	}
	p.LastSeq = pr.LastSeq
	var fenced *kv.FencedCommit
	if ic := pr.Incomplete; ic != nil {
		p.Incomplete = &capacity.IncompleteCommit{Commit: ic.Commit, FirstSeq: ic.FirstSeq, LastSeq: ic.LastSeq, Have: ic.Have, Want: ic.Want}
		fenced = &kv.FencedCommit{Commit: ic.Commit, Pools: ic.Pools()}
		for _, m := range ic.Fenced {
			p.Incomplete.Fenced = append(p.Incomplete.Fenced, capacity.FencedMessage(m))
			fenced.Seqs = append(fenced.Seqs, m.Seq)
		}
		if err := a.dropFenced(ctx, region, fenced); err != nil {
			return p, err
		}
		a.log.Error().Str("region", region).Str("commit", ic.Commit).Int("have", ic.Have).Int("want", ic.Want).
			Uint64("first_seq", ic.FirstSeq).Uint64("last_seq", ic.LastSeq).Strs("pools", fenced.Pools).
			Msg("promotion: the copy held only part of its last atomic commit: fenced (its messages deleted from the promoted copy, its pools' snapshots here dropped, their read models refolded)")
	}
	t := kv.Term{Region: region, Writer: a.cfg.Region, Epoch: p.Epoch, From: p.LastSeq, Mode: p.Mode, At: a.now().UTC(), Fenced: fenced}
	if err := a.terms.Raise(ctx, t); err != nil {
		return p, err
	}
	if wait := a.lease.takeoverWait(); wait > 0 && p.Mode == "takeover" {
		// The old writer, cut off, stops writing within its lease; it must
		// have before this region writes (lease.go).
		a.log.Warn().Str("region", region).Dur("wait", wait).Msg("takeover: waiting out the old writer's write lease before writing")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return p, capacity.Errorf(capacity.EUNAVAILABLE, "takeover of region %s: epoch %d is raised, but the wait for the old writer's lease (%v) was cut short: %v; promote again to finish", region, p.Epoch, wait, ctx.Err())
		}
	}
	if err := a.startWriting(ctx, t); err != nil {
		return p, err
	}
	p.Took = time.Since(start)
	a.log.Warn().Str("region", region).Str("mode", p.Mode).Uint64("epoch", p.Epoch).Uint64("last_seq", p.LastSeq).Dur("took", p.Took).Msg("promoted: this region writes the region's pools now")
	return p, nil
}
