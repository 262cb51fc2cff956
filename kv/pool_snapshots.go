package kv

import (
	"context"
	"errors"

	"github.com/capacityd/capacityd/capacity"
)

// PoolSnapshots adapts Snapshots to capacity.SnapshotStore. Keys are
// "<region>.<pool>", so regions can share one bucket (and a mirror of it).
type PoolSnapshots struct {
	snaps  *Snapshots
	region string
}

// NewPoolSnapshots returns the domain view of snaps for one home region.
func NewPoolSnapshots(snaps *Snapshots, region string) *PoolSnapshots {
	return &PoolSnapshots{snaps: snaps, region: region}
}

// Key returns the bucket key of a pool's snapshot.
func (p *PoolSnapshots) Key(pool string) string { return p.region + "." + pool }

// Get implements capacity.SnapshotStore.
func (p *PoolSnapshots) Get(ctx context.Context, pool string) (uint64, []byte, error) {
	snap, err := p.snaps.Get(ctx, p.Key(pool))
	if errors.Is(err, ErrNotFound) {
		return 0, nil, capacity.ErrNoSnapshot
	} else if err != nil {
		return 0, nil, err
	}
	return snap.Seq, snap.Data, nil
}

// Put implements capacity.SnapshotStore.
func (p *PoolSnapshots) Put(ctx context.Context, pool string, seq uint64, data []byte) error {
	return p.snaps.Put(ctx, p.Key(pool), seq, data)
}

// Delete removes a pool's snapshot.
func (p *PoolSnapshots) Delete(ctx context.Context, pool string) error {
	return p.snaps.Delete(ctx, p.Key(pool))
}
