package projection_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/nats-io/nats.go/jetstream"
)

// startCheckpointed starts fresh models, as a new process would, whose
// runner loads and saves checkpoints in cp, every `every` events.
func (e *env) startCheckpointed(t *testing.T, cp *projection.Checkpoints, durable string, every int) *models {
	t.Helper()
	m := newModels()
	r, err := projection.New(e.js, e.store.StreamName(), durable, projection.Apply(m.models),
		projection.WithCheckpoints(cp, m.models, every, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	m.runner = r
	m.start(t)
	return m
}

func TestCheckpointResume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cp := e.checkpoints(t)
	// traffic runs commands through a write side closed afterwards, so
	// that no expiry writes while the models are compared with the stream.
	traffic := func(seed uint64, n int) int {
		svc := e.service(t)
		defer svc.Close()
		return e.traffic(t, svc, seed, 50, n)
	}
	traffic(31, 3000)

	// The first process rebuilds from sequence 1, checkpoints every 100
	// events while it catches up, and once more when it stops.
	a := e.startCheckpointed(t, cp, "a", 100)
	e.check(t, a)
	traffic(32, 500)
	e.check(t, a)
	st, _ := a.runner.Status(ctx)
	if st.StartSeq != 1 || st.Checkpoint.LoadedSeq != 0 || st.Checkpoint.Fallback == "" {
		t.Fatalf("first start: status %+v, checkpoint %+v: want a rebuild from 1", st, st.Checkpoint)
	}
	a.stop(t)
	saved, _ := a.runner.Status(ctx)
	if saved.Checkpoint.SavedSeq != saved.Position || saved.Checkpoint.Failures != 0 {
		t.Fatalf("after stop: checkpoint %+v, want saved at the position %d", saved.Checkpoint, saved.Position)
	}

	// More history, then a new process: it loads the checkpoint and reads
	// only the tail after it.
	tail := traffic(33, 400)
	b := e.startCheckpointed(t, cp, "b", 100)
	e.check(t, b)
	st, _ = b.runner.Status(ctx)
	if st.Checkpoint.LoadedSeq != saved.Position || st.StartSeq != saved.Position+1 || st.Checkpoint.Fallback != "" {
		t.Fatalf("restart: status %+v, checkpoint %+v: want a resume after %d", st, st.Checkpoint, saved.Position)
	}
	var tailEvents uint64
	for _, err := range e.events.Log(ctx, saved.Position+1) {
		if err != nil {
			t.Fatal(err)
		}
		tailEvents++
	}
	if st.Applied != tailEvents || tail == 0 {
		t.Fatalf("restart applied %d events, the tail after the checkpoint holds %d (%d commands accepted)", st.Applied, tailEvents, tail)
	}
	cons, err := e.js.Consumer(ctx, e.store.StreamName(), "b")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := cons.CachedInfo().Config; cfg.OptStartSeq != saved.Position+1 {
		t.Fatalf("consumer starts at %d (%v), want %d", cfg.OptStartSeq, cfg.DeliverPolicy, saved.Position+1)
	}
	if !st.CaughtUp || st.ReadyAt < saved.Position {
		t.Fatalf("status %+v: want caught up", st)
	}
}

func TestCheckpointFallback(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cp := e.checkpoints(t)
	obs, err := e.js.ObjectStore(ctx, projection.DefaultCheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	svc := e.service(t)
	e.traffic(t, svc, 41, 30, 1500)
	svc.Close()
	a := e.startCheckpointed(t, cp, "a", 1_000_000)
	e.check(t, a)
	a.stop(t)
	name := e.store.StreamName()
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	good, err := obs.GetBytes(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	goodMeta := info.Metadata
	svc = e.service(t)
	e.traffic(t, svc, 42, 30, 300) // the stream moves on past the checkpoint
	svc.Close()

	with := func(key, value string) map[string]string {
		md := make(map[string]string)
		for k, v := range goodMeta {
			md[k] = v
		}
		md[key] = value
		return md
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	last, err := e.store.StreamLastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name string
		meta map[string]string // nil: no checkpoint at all
		body []byte
	}{
		{"missing", nil, nil},
		{"corrupt body", goodMeta, flip(len(good) / 2)},
		{"truncated body", goodMeta, good[:len(good)/2]},
		{"unknown version", goodMeta, flip(8)},
		{"ahead of the stream", with("seq", strconv.FormatUint(last+50, 10)), good},
		{"another stream", with("stream_created", "2001-01-01T00:00:00Z"), good},
		{"last message not the stream's", with("last_msg_id", "someone-else"), good},
		{"end message not the stream's", with("end_msg_id", "someone-else"), good},
		{"end message ahead of the stream", with("end_msg_seq", strconv.FormatUint(last+50, 10)), good},
		{"garbled metadata", with("seq", "x"), good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.meta == nil {
				if err := obs.Delete(ctx, name); err != nil {
					t.Fatal(err)
				}
			} else if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name, Metadata: tc.meta}, bytes.NewReader(tc.body)); err != nil {
				t.Fatal(err)
			}
			m := e.startCheckpointed(t, cp, "f"+strconv.Itoa(i), 1_000_000)
			e.check(t, m) // equal to a fresh fold of the stream
			st, _ := m.runner.Status(ctx)
			if st.StartSeq != 1 || st.Checkpoint.LoadedSeq != 0 || st.Checkpoint.Fallback == "" {
				t.Fatalf("status %+v, checkpoint %+v: want a rebuild from 1", st, st.Checkpoint)
			}
			t.Logf("fallback: %s", st.Checkpoint.Fallback)
			m.stop(t) // saves a good checkpoint again, which the next case replaces
		})
	}
	// The checkpoint is read chunk by chunk from the bucket's stream, not
	// through ObjectStore.Get: one of many small chunks loads whole.
	t.Run("many chunks", func(t *testing.T) {
		good, err := obs.GetBytes(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := obs.GetInfo(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name, Metadata: info.Metadata, Opts: &jetstream.ObjectMetaOptions{ChunkSize: 1000}}, bytes.NewReader(good)); err != nil {
			t.Fatal(err)
		}
		if info, err = obs.GetInfo(ctx, name); err != nil || info.Chunks < 10 {
			t.Fatalf("checkpoint stored in %d chunks (%v), want many", info.Chunks, err)
		}
		m := e.startCheckpointed(t, cp, "chunks", 1_000_000)
		e.check(t, m)
		st, _ := m.runner.Status(ctx)
		if st.Checkpoint.LoadedSeq == 0 || st.Checkpoint.Fallback != "" {
			t.Fatalf("checkpoint %+v: want it loaded", st.Checkpoint)
		}
		m.stop(t)
	})
}

// gatedState is models whose checkpoints, once begun, wait at a gate before
// they are encoded, as a slow encoding would; began receives the sequence
// of each checkpoint begun.
type gatedState struct {
	*views.Models
	gate  chan struct{} // closed: encode
	began chan uint64
}

func (g *gatedState) BeginCheckpoint() (uint64, func(io.Writer) error, error) {
	seq, write, err := g.Models.BeginCheckpoint()
	if err != nil {
		return 0, nil, err
	}
	select {
	case g.began <- seq:
	default:
	}
	return seq, func(w io.Writer) error {
		<-g.gate
		return write(w)
	}, nil
}

// TestCheckpointInBackground: a checkpoint is encoded while the runner
// goes on applying events (here it waits at a gate until they are all
// applied), so its pools reflect commits after its sequence. Saved, then
// loaded by a new process, which reads the stream after that sequence
// (commits some pools hold already included), it gives the models a
// fresh fold of the stream gives. Shutdown waits for the checkpoint in
// flight, then saves a last one.
func TestCheckpointInBackground(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cp := e.checkpoints(t)
	obs, err := e.js.ObjectStore(ctx, projection.DefaultCheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	traffic := func(seed uint64, n int) {
		svc := e.service(t)
		defer svc.Close()
		e.traffic(t, svc, seed, 40, n)
	}
	traffic(51, 1500)

	a := newModels()
	state := &gatedState{Models: a.models, gate: make(chan struct{}), began: make(chan uint64, 100)}
	a.runner, err = projection.New(e.js, e.store.StreamName(), "a", projection.Apply(a.models),
		projection.WithCheckpoints(cp, state, 100, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a.start(t)
	var p0 uint64
	select {
	case p0 = <-state.began:
	case <-time.After(20 * time.Second):
		t.Fatal("no checkpoint began")
	}
	// The checkpoint waits at the gate; the runner applies the rest of the
	// stream, and more.
	e.check(t, a)
	traffic(52, 500)
	e.check(t, a)
	if pos := a.runner.Position(); pos <= p0 {
		t.Fatalf("position %d, want past the checkpoint's %d", pos, p0)
	}
	close(state.gate)
	deadline := time.Now().Add(20 * time.Second)
	for st := a.runner.Counters(); st.Checkpoint.SavedSeq != p0; st = a.runner.Counters() {
		if time.Now().After(deadline) || st.Checkpoint.Failures > 0 {
			t.Fatalf("checkpoint %+v, want the one at %d saved", st.Checkpoint, p0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	info, err := obs.GetInfo(ctx, e.store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	fuzzy, err := obs.GetBytes(ctx, e.store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	// It is fuzzy: some pools are past its sequence.
	loaded := views.New()
	if pos, err := loaded.ReadCheckpoint(bytes.NewReader(fuzzy)); err != nil || pos != p0 {
		t.Fatalf("ReadCheckpoint = %d, %v; want %d", pos, err, p0)
	}
	past := 0
	figures, _ := loaded.Figures("", views.MaxLimit, epoch, nil)
	for _, f := range figures {
		if f.Seq > p0 {
			past++
		}
	}
	if past == 0 {
		t.Fatalf("no pool of the checkpoint at %d is past it: the encoding did not overlap the events", p0)
	}
	// Its metadata names the last message its pools may hold, for the
	// stream to vouch for at a load.
	if end, err := strconv.ParseUint(info.Metadata["end_msg_seq"], 10, 64); err != nil || end <= p0 {
		t.Fatalf("metadata %v: want an end message past %d", info.Metadata, p0)
	}

	traffic(53, 300)
	a.stop(t) // saves a last checkpoint
	st := a.runner.Counters()
	if st.Checkpoint.SavedSeq != st.Position || st.Checkpoint.Failures != 0 {
		t.Fatalf("after stop: checkpoint %+v, want saved at the position %d", st.Checkpoint, st.Position)
	}
	// A new process from the fuzzy checkpoint.
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: e.store.StreamName(), Metadata: info.Metadata}, bytes.NewReader(fuzzy)); err != nil {
		t.Fatal(err)
	}
	b := e.startCheckpointed(t, cp, "b", 1_000_000)
	e.check(t, b)
	if st := b.runner.Counters(); st.Checkpoint.LoadedSeq != p0 || st.StartSeq != p0+1 {
		t.Fatalf("restart: status %+v, checkpoint %+v: want a resume after %d", st, st.Checkpoint, p0)
	}
}

// failingState is models whose first checkpoint fails to encode, once
// gate is closed (if not nil); began is closed when it begins.
type failingState struct {
	*views.Models
	failed      atomic.Bool
	gate, began chan struct{}
}

func (f *failingState) BeginCheckpoint() (uint64, func(io.Writer) error, error) {
	seq, write, err := f.Models.BeginCheckpoint()
	if err != nil || f.failed.Swap(true) {
		return seq, write, err
	}
	if f.began != nil {
		close(f.began)
	}
	return seq, func(w io.Writer) error {
		if f.gate != nil {
			<-f.gate
		}
		_ = write(io.Discard) // a checkpoint begun is written, to let the next begin
		return errors.New("disk full")
	}, nil
}

// TestCheckpointRetriedAfterFailure: a checkpoint whose encoding fails in
// the background is written again once the interval has passed, even if no
// event arrived since it began.
func TestCheckpointRetriedAfterFailure(t *testing.T) {
	e := newEnv(t)
	cp := e.checkpoints(t)
	svc := e.service(t)
	e.traffic(t, svc, 61, 10, 200)
	svc.Close()
	m := newModels()
	state := &failingState{Models: m.models}
	var err error
	m.runner, err = projection.New(e.js, e.store.StreamName(), "a", projection.Apply(m.models),
		projection.WithCheckpoints(cp, state, 1_000_000, 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	m.start(t)
	e.check(t, m) // caught up: no event arrives from now on
	deadline := time.Now().Add(20 * time.Second)
	for st := m.runner.Counters(); st.Checkpoint.SavedSeq != st.Position; st = m.runner.Counters() {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %+v, position %d: want a checkpoint saved at the position after the failed one", st.Checkpoint, st.Position)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := m.runner.Counters(); st.Checkpoint.Failures != 1 {
		t.Fatalf("checkpoint %+v: want one failure", st.Checkpoint)
	}
}

// TestCheckpointFailingAtShutdown: a checkpoint in flight when Run returns,
// which then fails, is followed by the last checkpoint at shutdown, though
// no event arrived since it began.
func TestCheckpointFailingAtShutdown(t *testing.T) {
	e := newEnv(t)
	cp := e.checkpoints(t)
	svc := e.service(t)
	e.traffic(t, svc, 62, 10, 200)
	svc.Close()
	m := newModels()
	state := &failingState{Models: m.models, gate: make(chan struct{}), began: make(chan struct{})}
	var err error
	m.runner, err = projection.New(e.js, e.store.StreamName(), "a", projection.Apply(m.models),
		projection.WithCheckpoints(cp, state, 1_000_000, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	m.start(t)
	e.check(t, m)
	<-state.began // after the models caught up: nothing new since
	time.AfterFunc(100*time.Millisecond, func() { close(state.gate) })
	m.stop(t)
	if st := m.runner.Counters(); st.Checkpoint.SavedSeq != st.Position || st.Checkpoint.Failures != 1 {
		t.Fatalf("after stop: checkpoint %+v, position %d: want one failure, then a checkpoint at the position", st.Checkpoint, st.Position)
	}
}
