package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
)

// An incomplete commit fenced at promotion (streams.Mirror.Promote) is
// deleted from the promoted copy; what this region derived from it goes
// too. Snapshots: the pools' snapshots of the promoted region in this
// domain's bucket are deleted (a write side loads them from the stream).
// Read models: the fold of each pool is replaced by a fold of its history
// as the stream now holds it, and the fenced sequences are ignored if a
// consumer still delivers them (views.Models.Refold); the read models'
// checkpoint is deleted, so a restart rebuilds from the streams. The term
// names the commit (kv.Term.Fenced): every instance of this region that
// starts writing the promoted region refolds the same pools.

// dropFenced deletes the fenced pools' snapshots of region in this
// domain's bucket and the read models' checkpoint.
//
// A known window, not closed: between this delete and the Refold in
// startWriting (the term is raised in between, and a takeover may wait out
// a write lease), a checkpoint of the home stream can be begun and saved,
// by this instance or another of the region, with the fenced commit's
// effects in it, and a save at the same position never overwrites it. At
// every start whose term still carries the fence, refoldFenced refolds the
// pools after that checkpoint loads, so it is harmless while the term
// does; once a later term has dropped the fence, a restart before the home
// stream moves on would load it. Closing it needs the checkpoint to say
// which fenced commits its models were refolded without (or the terms to
// keep every fence), checked at load.
func (a *app) dropFenced(ctx context.Context, region string, fenced *kv.FencedCommit) error {
	snaps := kv.NewPoolSnapshots(a.snaps, region)
	for _, pool := range fenced.Pools {
		if err := snaps.Delete(ctx, pool); err != nil && !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("fencing commit %s: snapshot of %s: %w", fenced.Commit, pool, err)
		}
	}
	if a.views != nil {
		if err := a.views.Delete(ctx, streams.StreamName(a.cfg.Region)); err != nil {
			return fmt.Errorf("fencing commit %s: read models' checkpoint: %w", fenced.Commit, err)
		}
	}
	return nil
}

// fenceLoadWait bounds how long a start waits for the read models'
// checkpoint to load before refolding the fenced pools over it.
const fenceLoadWait = 30 * time.Second

// refoldFenced refolds, in this instance's read models, the pools of the
// commit fenced in t from their history in store (the promoted copy).
func (a *app) refoldFenced(ctx context.Context, store *streams.Store, t kv.Term) error {
	rm := a.readModels
	if rm == nil {
		return nil
	}
	// A checkpoint loaded after the refold would bring the commit back.
	deadline := time.Now().Add(fenceLoadWait)
	for {
		if _, started := rm.homeRunner().ReadyAt(); started {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fenced commit %s: the read models did not load within %v", t.Fenced.Commit, fenceLoadWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, pool := range t.Fenced.Pools {
		var history []views.Commit
		for rec, err := range store.Read(ctx, pool, 0) {
			if err != nil {
				return fmt.Errorf("fenced commit %s: history of %s: %w", t.Fenced.Commit, pool, err)
			}
			events, err := rec.Events()
			if err != nil {
				continue // undecodable: skipped, as the projection does
			}
			history = append(history, views.Commit{Seq: rec.Seq, Events: events})
		}
		rm.models.Refold(pool, history, t.Fenced.Seqs)
		a.log.Warn().Str("region", t.Region).Str("pool", pool).Str("commit", t.Fenced.Commit).Int("commits", len(history)).
			Msg("read models: pool refolded without the fenced commit")
	}
	return nil
}
