package projection

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// A checkpoint larger than the pacing window (here 20 MiB, 160 chunks
// against 64) is stored whole and in order from its spool file, and a
// spool file left by a killed process is removed by SpoolIn.
func TestCheckpointSavePaced(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	ctx := context.Background()
	cp, err := NewCheckpoints(ctx, js, "paced", 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	left := filepath.Join(dir, "capacityd-checkpoint-123.tmp")
	if err := os.WriteFile(left, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cp.SpoolIn(dir)
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("spool file left by a killed process: %v", err)
	}
	data := make([]byte, 20<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	paced := cp.paced(ctx, bytes.NewReader(data))
	if _, err := cp.obs.Put(ctx, jetstream.ObjectMeta{Name: "P"}, paced); err != nil {
		t.Fatal(err)
	}
	if p := paced.(*pacedReader); p.stream == nil || p.sent != 160 || p.stored < p.sent-paceWindow {
		t.Fatalf("paced reader sent %d chunks, %d known stored, stream %v; want 160, pacing to the end", p.sent, p.stored, p.stream)
	}
	// The runner's path: save paces what it is given.
	stored, err := cp.save(ctx, "S", checkpointMeta{seq: 7, created: time.Now()}, bytes.NewReader(data))
	if err != nil || !stored {
		t.Fatalf("save = %v, %v", stored, err)
	}
	obj, err := cp.obs.Get(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes, %v; want the %d saved", len(got), err, len(data))
	}
}
