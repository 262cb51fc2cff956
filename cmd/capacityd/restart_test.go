package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/streams/natstest"
)

// TestRestartResumesFromCheckpoint stops the service gracefully (which
// checkpoints the read models) and starts it again on the same data: the
// read models load the checkpoint, read only the stream after it, and
// /readyz says ready once they have caught up.
func TestRestartResumesFromCheckpoint(t *testing.T) {
	dir := t.TempDir()
	a, stop := startTestIn(t, dir)
	ctx := context.Background()
	start := time.Now().Add(24 * time.Hour)
	var last uint64
	for i := range 20 {
		pool := fmt.Sprintf("cp-%d", i)
		if _, err := a.pools.Execute(ctx, pool, capacity.DefinePool{Pool: pool, Region: "r1", Kind: "delivery",
			StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 100}); err != nil {
			t.Fatal(err)
		}
		res, err := a.pools.Execute(ctx, pool, capacity.Hold{ReservationID: "h" + pool, Quantity: 2, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, res.Pool.Version)
	}
	// A pool large enough that the restarted models keep it encoded until
	// a lookup touches it.
	for i := range 40 {
		res, err := a.pools.Execute(ctx, "cp-0", capacity.Hold{ReservationID: fmt.Sprintf("big-%d", i), Quantity: 1, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		last = max(last, res.Pool.Version)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.readModels.waitFor(wctx, views.MinPositions{"": last}); err != nil {
		t.Fatal(err)
	}
	stop()

	b, _ := startTestIn(t, dir)
	var ready map[string]any
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var code int
		code, ready = call(t, "GET", b.HTTPURL+"/readyz", "")
		if code != http.StatusOK {
			return fmt.Errorf("readyz %d: %v", code, ready)
		}
		return nil
	})
	st := b.readModels.homeRunner().Counters()
	if st.Checkpoint == nil || st.Checkpoint.LoadedSeq < last || st.StartSeq != st.Checkpoint.LoadedSeq+1 || !st.CaughtUp {
		t.Fatalf("after restart: status %+v, checkpoint %+v: want a resume from the checkpoint at %d", st, st.Checkpoint, last)
	}
	if st.Applied != 0 {
		t.Fatalf("after a graceful restart the projection applied %d events, want none (the checkpoint is at the stream's end)", st.Applied)
	}
	if rm := ready["read_models"].(map[string]any); rm["caught_up"] != true {
		t.Fatalf("readyz detail: %v", rm)
	}
	if matches, _ := b.readModels.reservations.Lookup("hcp-7", b.now()); len(matches) != 1 || matches[0].Pool != "cp-7" || matches[0].Quantity != 2 {
		t.Fatalf("lookup after restart = %+v", matches)
	}
	if matches, _ := b.readModels.reservations.Lookup("big-39", b.now()); len(matches) != 1 || matches[0].Pool != "cp-0" || matches[0].Quantity != 1 {
		t.Fatalf("lookup in a pool loaded lazily after restart = %+v", matches)
	}
	// Checkpoints were spooled in the data directory and nothing is left.
	if left, _ := filepath.Glob(filepath.Join(dir, "capacityd-checkpoint-*")); len(left) > 0 {
		t.Fatalf("spool files left in the data directory: %v", left)
	}
}
