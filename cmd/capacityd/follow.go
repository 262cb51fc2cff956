package main

import (
	"context"
	"fmt"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
)

// readTerm returns region's highest term: this domain's bucket and every
// peer domain that answers within regionProbeTimeout.
func (a *app) readTerm(ctx context.Context, region string) (kv.Term, error) {
	best, err := a.terms.Get(ctx, region)
	if err != nil {
		return best, err
	}
	for _, peer := range a.cfg.PeerRegions {
		pctx, cancel := context.WithTimeout(ctx, regionProbeTimeout)
		start := time.Now()
		t, err := kv.PeerTerm(pctx, a.nc, peer, region)
		cancel()
		if err == nil {
			// The peer answered: the write lease runs from when the read
			// started (whatever it showed is applied right after).
			a.lease.renew(peer, start)
		}
		if err == nil && t.Epoch > best.Epoch {
			best = t
		}
	}
	return best, nil
}

// follow makes this domain's copy of t.Region's stream a mirror of the
// head (the copy in t.Writer's domain) when this region does not write
// it: failback's first half (streams, "Failback"). A copy that is not
// already such a mirror is set aside whole under streams.FencedName and a
// fresh mirror of the head takes its name, once the writer has promoted
// its copy (its own bucket holds the term: before that its copy may still
// be mirroring this one). A copy with a diverged tail (beyond t.From) also
// costs the folds of that tail: the snapshots of the region's pools in
// this domain and the read models' checkpoint are deleted, and the read
// models are rebuilt from the head (at start they do not exist yet; while
// running, readModels.rebuild stops their projections around the set
// aside and feeds them again from the first message of every source).
// For this region's own pools the tail is reported in GET /v1/regions.
// Nothing writes the region's pools here meanwhile: a copy that does not
// follow the head is one of a region this one does not write (fenced).
func (a *app) follow(ctx context.Context, t kv.Term, atStart bool) error {
	if t.Writer == a.cfg.Region || t.Epoch == 0 {
		return nil // this region writes it, or nobody ever promoted it: the plain mirror of openMirrors
	}
	c, err := streams.Copy(ctx, a.js, t.Region)
	if err != nil || c.Origin == t.Writer {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, regionProbeTimeout)
	head, err := kv.PeerTerm(pctx, a.nc, t.Writer, t.Region)
	cancel()
	if err != nil || head.Epoch < t.Epoch || head.Writer != t.Writer {
		return nil // the writer has not promoted its copy yet, or does not answer: later
	}
	log := a.log.With().Str("region", t.Region).Str("head", t.Writer).Uint64("epoch", t.Epoch).Logger()
	var tail *capacity.FencedTail
	if c.Exists && c.LastSeq > t.From {
		tail = &capacity.FencedTail{Epoch: t.Epoch, Writer: t.Writer, FirstSeq: t.From + 1, LastSeq: c.LastSeq, Stream: streams.FencedName(t.Region, t.Epoch)}
	}
	followHead := func(ctx context.Context) error {
		if tail != nil {
			n, err := a.snaps.DeleteRegion(ctx, t.Region)
			if err != nil {
				return err
			}
			if a.views != nil {
				if err := a.views.Delete(ctx, streams.StreamName(a.cfg.Region)); err != nil {
					return err
				}
			}
			log.Warn().Int("snapshots_deleted", n).Bool("at_start", atStart).Msg("diverged copy: its pool snapshots and the read models' checkpoint deleted (rebuilt from the head)")
		}
		if c.Exists {
			aside, err := streams.SetAside(ctx, a.js, t.Region, streams.FencedName(t.Region, t.Epoch))
			if err != nil {
				return fmt.Errorf("setting aside the copy of region %s: %w", t.Region, err)
			}
			ev := log.Warn().Str("aside", aside.Stream).Uint64("aside_last_seq", aside.LastSeq).Uint64("from", t.From)
			if tail != nil {
				ev = ev.Uint64("tail_first_seq", tail.FirstSeq).Uint64("tail_last_seq", tail.LastSeq).Uint64("tail_count", tail.Count())
			}
			ev.Msg("copy set aside (kept, sealed, never merged); following the head with a fresh mirror")
		}
		if _, err := streams.EnsureMirrorFrom(ctx, a.js, t.Region, t.Writer, streams.WithReplicas(a.cfg.Replicas)); err != nil {
			return fmt.Errorf("mirror of region %s from %s: %w", t.Region, t.Writer, err)
		}
		return nil
	}
	if tail != nil && !atStart {
		log.Warn().Uint64("tail_first_seq", tail.FirstSeq).Uint64("tail_last_seq", tail.LastSeq).
			Msg("this region's copy has a diverged tail: setting it aside and rebuilding the read models from the head while running")
		err = a.readModels.rebuild(ctx, followHead)
	} else {
		err = followHead(ctx)
	}
	if err != nil {
		return err
	}
	if tail != nil && t.Region == a.cfg.Region {
		a.w.gate.Lock()
		a.w.tail = tail
		a.w.gate.Unlock()
	}
	return nil
}

// followAll runs follow for every region this region holds a copy of.
func (a *app) followAll(ctx context.Context, atStart bool) {
	for _, region := range append([]string{a.cfg.Region}, a.cfg.PeerRegions...) {
		var t kv.Term
		if atStart {
			var err error
			if t, err = a.readTerm(ctx, region); err != nil {
				a.log.Warn().Err(err).Str("region", region).Msg("terms: own bucket")
				continue
			}
		} else {
			a.w.gate.RLock()
			t = a.w.terms[region]
			a.w.gate.RUnlock()
		}
		if err := a.follow(ctx, t, atStart); err != nil {
			a.log.Error().Err(err).Str("region", region).Msg("failback: cannot follow the head")
		}
	}
}
