package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/nats-io/nats.go/jetstream"
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

// TestRestartRepairsABrokenCheckpoint stores a checkpoint whose checksum
// holds but in which one large pool's snapshot does not decode (what a bug
// in the encoder could leave), starts the service on it and holds in that
// pool: the models find the pool broken when the event touches it, and the
// service deletes the checkpoint and rebuilds them from the stream while it
// runs, so the new hold and every earlier one are found and counted.
func TestRestartRepairsABrokenCheckpoint(t *testing.T) {
	dir := t.TempDir()
	a, stop := startTestIn(t, dir)
	ctx := context.Background()
	start := time.Now().Add(24 * time.Hour)
	const pool = "broken-0"
	if _, err := a.pools.Execute(ctx, pool, capacity.DefinePool{Pool: pool, Region: "r1", Kind: "delivery",
		StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 1000}); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 60 { // a snapshot over 1 KB: loaded lazily, decoded when touched
		res, err := a.pools.Execute(ctx, pool, capacity.Hold{ReservationID: fmt.Sprintf("before-%d", i), Quantity: 1, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Pool.Version
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.readModels.waitFor(wctx, views.MinPositions{"": last}); err != nil {
		t.Fatal(err)
	}
	stop() // checkpoints the read models

	// Spoil the pool's snapshot inside the stored checkpoint and make the
	// checksum fit again.
	c, stopC := startTestIn(t, dir, "--checkpoint-every", "0") // no projection checkpoints: it only edits the object
	obs, err := c.js.ObjectStore(ctx, projection.DefaultCheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	name := streams.StreamName(c.cfg.Region)
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	body, err := obs.GetBytes(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.LastIndex(body, []byte("CPS3"))
	if at < 0 {
		t.Fatal("no snapshot in the checkpoint")
	}
	copy(body[at:], "CPS9")
	binary.BigEndian.PutUint32(body[len(body)-4:], crc32.Checksum(body[:len(body)-4], crc32.MakeTable(crc32.Castagnoli)))
	if _, err := obs.PutBytes(ctx, name, body); err != nil {
		t.Fatal(err)
	}
	if err := obs.UpdateMeta(ctx, name, jetstream.ObjectMeta{Name: name, Metadata: info.Metadata}); err != nil {
		t.Fatal(err)
	}
	stopC()

	b, _ := startTestIn(t, dir)
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := b.readModels.homeRunner().Counters(); st.Checkpoint == nil || st.Checkpoint.LoadedSeq < last {
			return fmt.Errorf("projection %+v: not started from the checkpoint", st)
		}
		return nil
	})
	res, err := b.pools.Execute(ctx, pool, capacity.Hold{ReservationID: "after", Quantity: 2, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		matches, _ := b.readModels.reservations.Lookup("after", b.now())
		if len(matches) != 1 || matches[0].Pool != pool {
			return fmt.Errorf("lookup of the hold after the start = %+v (broken: %v)", matches, b.readModels.models.Broken())
		}
		return nil
	})
	if err := b.readModels.models.Broken(); err != nil {
		t.Fatalf("models still broken after the repair: %v", err)
	}
	wctx2, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if err := b.readModels.waitFor(wctx2, views.MinPositions{"": res.Pool.Version}); err != nil {
		t.Fatal(err)
	}
	if matches, _ := b.readModels.reservations.Lookup("before-0", b.now()); len(matches) != 1 || matches[0].Pool != pool {
		t.Fatalf("lookup of a hold from before the start = %+v", matches)
	}
	if st := b.readModels.homeRunner().Counters(); st.StartSeq != 1 {
		t.Fatalf("after the repair the projection started at %d, want 1 (rebuilt from the stream): %+v", st.StartSeq, st)
	}
	code, figures := call(t, "GET", b.HTTPURL+"/v1/pools/"+pool, "")
	if code != http.StatusOK {
		t.Fatalf("GET pool: %d %v", code, figures)
	}
	if got, want := figures["held"], 62.0; got != want {
		t.Fatalf("held = %v, want %v: %v", got, want, figures)
	}
}
