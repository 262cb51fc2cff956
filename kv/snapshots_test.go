package kv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams/natstest"
)

func newSnapshots(t *testing.T) (*kv.Snapshots, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	snaps, err := kv.New(context.Background(), js, kv.DefaultBucket)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return snaps, js
}

func TestPutGet(t *testing.T) {
	snaps, js := newSnapshots(t)
	ctx := context.Background()
	if got, want := snaps.Bucket(), "pool_snapshots"; got != want {
		t.Fatalf("Bucket = %q, want %q", got, want)
	}
	if _, err := snaps.Get(ctx, "eu.p1"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get missing = %v, want ErrNotFound", err)
	}
	if err := snaps.Put(ctx, "eu.p1", 10, []byte(`{"cap":5}`)); err != nil {
		t.Fatal(err)
	}
	got, err := snaps.Get(ctx, "eu.p1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != "eu.p1" || got.Seq != 10 || string(got.Data) != `{"cap":5}` || got.Revision == 0 {
		t.Fatalf("Get = %+v", got)
	}
	// The raw value starts with a readable header line.
	bucket, err := js.KeyValue(ctx, kv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := bucket.Get(ctx, "eu.p1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(entry.Value()), "{\"seq\":10,\"bytes\":9}\n{\"cap\":5}"; got != want {
		t.Fatalf("raw value = %q, want %q", got, want)
	}
	// The state is opaque: binary states round-trip, newlines included.
	binary := []byte("CPS2\x00\n\xff{")
	if err := snaps.Put(ctx, "eu.p1", 11, binary); err != nil {
		t.Fatal(err)
	}
	if got, err := snaps.Get(ctx, "eu.p1"); err != nil || got.Seq != 11 || string(got.Data) != string(binary) {
		t.Fatalf("binary snapshot = %+v, %v", got, err)
	}
	// Values of the earlier form are still read.
	if _, err := bucket.Put(ctx, "eu.old", []byte(`{"seq":7,"state":{"cap":3}}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := snaps.Get(ctx, "eu.old"); err != nil || got.Seq != 7 || string(got.Data) != `{"cap":3}` {
		t.Fatalf("old-form snapshot = %+v, %v", got, err)
	}
	// Invalid input.
	if err := snaps.Put(ctx, "eu.p1", 12, nil); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("Put of nothing = %v, want ErrInvalid", err)
	}
	for _, key := range []string{"", "a b", "a.", ".a", "a*"} {
		if _, err := snaps.Get(ctx, key); !errors.Is(err, kv.ErrInvalid) {
			t.Errorf("Get(%q) = %v, want ErrInvalid", key, err)
		}
	}
}

func TestPutNeverBackwards(t *testing.T) {
	snaps, _ := newSnapshots(t)
	ctx := context.Background()
	if err := snaps.Put(ctx, "p", 10, []byte(`"ten"`)); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{5, 10} {
		if err := snaps.Put(ctx, "p", seq, []byte(`"older"`)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := snaps.Get(ctx, "p")
	if err != nil || got.Seq != 10 || string(got.Data) != `"ten"` {
		t.Fatalf("Get = %+v, %v, want seq 10", got, err)
	}
	if err := snaps.Put(ctx, "p", 11, []byte(`"eleven"`)); err != nil {
		t.Fatal(err)
	}
	if got, err := snaps.Get(ctx, "p"); err != nil || got.Seq != 11 {
		t.Fatalf("Get = %+v, %v, want seq 11", got, err)
	}
}

// TestPutLargeAfterOthersWrote checks the short way Put takes for a large
// value it stored itself (a compare-and-set on the revision it remembers,
// without reading the value back): whatever another writer did to the key
// in between, a snapshot still never moves backwards, and a deleted key
// starts over.
func TestPutLargeAfterOthersWrote(t *testing.T) {
	snaps, js := newSnapshots(t)
	ctx := context.Background()
	other, err := kv.New(ctx, js, kv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	large := func(seq uint64) []byte { return bytes.Repeat(fmt.Appendf(nil, "%08d", seq), 16<<10) } // 128 KiB
	put := func(s *kv.Snapshots, seq uint64) {
		t.Helper()
		if err := s.Put(ctx, "eu.big", seq, large(seq)); err != nil {
			t.Fatalf("Put %d: %v", seq, err)
		}
	}
	want := func(seq uint64) {
		t.Helper()
		got, err := snaps.Get(ctx, "eu.big")
		if err != nil || got.Seq != seq || !bytes.Equal(got.Data, large(seq)) {
			t.Fatalf("Get = seq %d, %d bytes, %v; want seq %d", got.Seq, len(got.Data), err, seq)
		}
	}
	put(snaps, 10)
	put(snaps, 11) // the short way
	want(11)
	put(other, 20)
	put(snaps, 15) // its revision is stale: reads, finds 20, leaves it
	want(20)
	put(snaps, 21)
	put(snaps, 22)
	want(22)
	if err := other.Delete(ctx, "eu.big"); err != nil {
		t.Fatal(err)
	}
	put(snaps, 5) // the key starts over after a delete
	want(5)
	// A small value after a large one, and a large one again.
	if err := snaps.Put(ctx, "eu.big", 6, []byte("small")); err != nil {
		t.Fatal(err)
	}
	put(snaps, 7)
	want(7)
}

func TestConcurrentPutsKeepMax(t *testing.T) {
	snaps, _ := newSnapshots(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			seq := uint64(i + 1)
			errs <- snaps.Put(ctx, "hot", seq, fmt.Appendf(nil, "%d", seq))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, err := snaps.Get(ctx, "hot"); err != nil || got.Seq != 20 || string(got.Data) != "20" {
		t.Fatalf("Get = %+v, %v, want seq 20", got, err)
	}
}

func TestCorruptValue(t *testing.T) {
	snaps, js := newSnapshots(t)
	ctx := context.Background()
	bucket, err := js.KeyValue(ctx, kv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, garbage := range []string{"garbage", `{"state":{}}`, `{"seq":3}`, `{"seq":"x","state":1}`} {
		if _, err := bucket.Put(ctx, "p", []byte(garbage)); err != nil {
			t.Fatal(err)
		}
		if _, err := snaps.Get(ctx, "p"); !errors.Is(err, kv.ErrCorrupt) {
			t.Fatalf("Get of %q = %v, want ErrCorrupt", garbage, err)
		}
	}
	if err := snaps.Put(ctx, "p", 1, []byte(`{}`)); err != nil {
		t.Fatalf("Put over corrupt value: %v", err)
	}
	if got, err := snaps.Get(ctx, "p"); err != nil || got.Seq != 1 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
}

func TestDelete(t *testing.T) {
	snaps, _ := newSnapshots(t)
	ctx := context.Background()
	if err := snaps.Put(ctx, "p", 7, []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if err := snaps.Delete(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := snaps.Get(ctx, "p"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := snaps.Delete(ctx, "missing"); err != nil {
		t.Fatalf("Delete missing: %v", err)
	}
	// After a delete, a lower seq may be stored again: the history restarts.
	if err := snaps.Put(ctx, "p", 3, []byte(`2`)); err != nil {
		t.Fatal(err)
	}
	if got, err := snaps.Get(ctx, "p"); err != nil || got.Seq != 3 {
		t.Fatalf("Get = %+v, %v, want seq 3", got, err)
	}
}

func TestBucketDeletedAndRecreated(t *testing.T) {
	snaps, js := newSnapshots(t)
	ctx := context.Background()
	if err := snaps.Put(ctx, "p", 7, []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, kv.DefaultBucket); err != nil {
		t.Fatal(err)
	}
	_, err := snaps.Get(ctx, "p")
	if err == nil || errors.Is(err, kv.ErrCorrupt) {
		t.Fatalf("Get on deleted bucket = %v, want an error", err)
	}
	t.Logf("Get on deleted bucket: %v (ErrNotFound: %v)", err, errors.Is(err, kv.ErrNotFound))
	if err := snaps.Put(ctx, "p", 8, []byte(`1`)); err == nil {
		t.Fatalf("Put on deleted bucket succeeded")
	} else {
		t.Logf("Put on deleted bucket: %v", err)
	}

	again, err := kv.New(ctx, js, kv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Get(ctx, "p"); !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("Get in recreated bucket = %v, want ErrNotFound", err)
	}
	if err := again.Put(ctx, "p", 2, []byte(`2`)); err != nil {
		t.Fatal(err)
	}
	// The old handle works again too: it addresses the bucket by name.
	if got, err := snaps.Get(ctx, "p"); err != nil || got.Seq != 2 {
		t.Fatalf("old handle Get = %+v, %v", got, err)
	}
}

func TestNewChecksOptions(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	if _, err := kv.New(ctx, js, "bad.name"); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("New(bad.name) = %v, want ErrInvalid", err)
	}
	if _, err := kv.New(ctx, js, "b", kv.WithHistory(0)); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("WithHistory(0) = %v, want ErrInvalid", err)
	}
	snaps, err := kv.New(ctx, js, "b", kv.WithHistory(5))
	if err != nil {
		t.Fatal(err)
	}
	if snaps.Bucket() != "b" {
		t.Fatalf("Bucket = %q", snaps.Bucket())
	}
}
