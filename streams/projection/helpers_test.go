package projection_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/pools/poolstest"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/e2e/stacktest"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/capacityd/capacityd/streams/projection"
	"github.com/nats-io/nats.go/jetstream"
)

const region = "eu"

var epoch = time.Date(2030, 3, 1, 6, 0, 0, 0, time.UTC)

// env is one embedded server with the region's event store and snapshot
// bucket; services started on it share them.
type env struct {
	stack  *stacktest.Stack
	js     jetstream.JetStream
	store  *streams.Store
	events *streams.PoolEvents
	clock  *poolstest.Clock
}

func newEnv(t testing.TB) *env {
	t.Helper()
	st := stacktest.Open(t, natstest.RunServer(t), region)
	return &env{stack: st, js: st.JS, store: st.Store, events: st.Events, clock: poolstest.NewClock(epoch)}
}

// checkpoints opens the default checkpoint bucket on the env's server.
func (e *env) checkpoints(t testing.TB) *projection.Checkpoints {
	t.Helper()
	cp, err := projection.NewCheckpoints(context.Background(), e.js, projection.DefaultCheckpointBucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// service starts the real write side over the env's store; it closes when the test ends.
func (e *env) service(t *testing.T) *pools.Service {
	t.Helper()
	return e.stack.Start(t, pools.Options{Now: e.clock.Now, SnapshotEvery: 50})
}

// models is one set of read models with the runner feeding them.
type models struct {
	models       *views.Models
	availability *views.Availability
	reservations *views.Reservations
	board        *views.Board
	runner       *projection.Runner
	cancel       context.CancelFunc
	done         chan error
}

// startModels creates fresh models and a runner on durable, and runs it
// until stop or the end of the test.
func (e *env) startModels(t *testing.T, durable string, opts ...projection.Option) *models {
	t.Helper()
	m := newModels()
	r, err := projection.New(e.js, e.store.StreamName(), durable, projection.Apply(m.models), opts...)
	if err != nil {
		t.Fatal(err)
	}
	m.runner = r
	m.start(t)
	return m
}

// newModels returns fresh models without a runner.
func newModels() *models {
	v := views.New()
	return &models{models: v, availability: v.Availability, reservations: v.Reservations, board: v.Board}
}

// start runs the runner (again) until stop.
func (m *models) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() { m.done <- m.runner.Run(ctx) }()
	t.Cleanup(func() { m.stop(t) })
}

// stop cancels the runner and waits for Run to return.
func (m *models) stop(t *testing.T) {
	t.Helper()
	if m.cancel == nil {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	m.cancel = nil
}

// check waits until the models reflect the whole stream, then compares them
// with a fresh replay of it at the clock's now.
func (e *env) check(t *testing.T, m *models) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	last, err := e.store.StreamLastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.runner.WaitFor(ctx, last); err != nil {
		t.Fatalf("WaitFor(%d): %v (position %d)", last, err, m.runner.Position())
	}
	replay := views.NewReplay()
	for ev, err := range e.events.Log(ctx, 1) {
		switch {
		case err == nil:
			replay.Apply(ev.Pool, ev.Seq, ev.Event)
		case capacity.ErrorCode(err) == capacity.EINVALID:
			var seq uint64
			if _, scanErr := fmt.Sscanf(err.Error(), "seq %d:", &seq); scanErr != nil {
				t.Fatalf("poison without seq: %v", err)
			}
			replay.Advance(seq)
		default:
			t.Fatalf("log: %v", err)
		}
	}
	if replay.Position() != last {
		t.Fatalf("replay reached %d, stream last seq %d", replay.Position(), last)
	}
	now := e.clock.Now()
	if diffs := replay.Diff(m.availability, m.reservations, m.board, now, 10); len(diffs) > 0 {
		t.Fatalf("read models differ from a replay of the stream:\n%s", strings.Join(diffs, "\n"))
	}
}

// traffic drives n random commands over npools pools through svc from
// several clients, moving the clock, and returns how many were accepted.
func (e *env) traffic(t *testing.T, svc *pools.Service, seed uint64, npools, n int) int {
	t.Helper()
	const clients = 8
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for range n / clients {
				pool := fmt.Sprintf("pool-%03d", rng.IntN(npools))
				e.clock.Advance(time.Duration(rng.IntN(400)) * time.Millisecond)
				_, err := svc.Execute(context.Background(), pool, randomCommand(rng, pool))
				switch {
				case err == nil:
					accepted.Add(1)
				case capacity.ErrorCode(err) == capacity.EUNAVAILABLE || capacity.ErrorCode(err) == capacity.EINTERNAL:
					t.Errorf("execute: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	return int(accepted.Load())
}

// randomCommand returns a weighted random command; reservation ids repeat
// within a pool so confirms and releases find their holds.
func randomCommand(rng *rand.Rand, pool string) capacity.Command {
	rid := fmt.Sprintf("r%d", rng.IntN(60))
	switch k := rng.IntN(100); {
	case k < 8:
		n := int(pool[len(pool)-1] - '0')
		slot := epoch.Add(time.Duration(n%4)*24*time.Hour + time.Duration(rng.IntN(3))*time.Hour)
		return capacity.DefinePool{Pool: pool, Region: region, Kind: []string{"delivery", "picking"}[n%2],
			StartsAt: slot, EndsAt: slot.Add(90 * 24 * time.Hour), Capacity: 20 + n, Overbook: n % 3}
	case k < 50:
		return capacity.Hold{ReservationID: rid, Quantity: 1 + rng.IntN(3), TTL: time.Duration(1+rng.IntN(30)) * time.Second}
	case k < 68:
		return capacity.Confirm{ReservationID: rid}
	case k < 80:
		return capacity.Release{ReservationID: rid}
	case k < 86:
		return capacity.Expire{}
	case k < 93:
		c := 5 + rng.IntN(30)
		return capacity.ChangePool{Capacity: &c}
	default:
		return capacity.ChangePool{Status: []capacity.Status{capacity.Open, capacity.Closed}[rng.IntN(2)]}
	}
}

// errOnce is a Handler wrapper that fails the first time it sees seq.
func errOnce(h projection.Handler, seq uint64) (projection.Handler, *atomic.Int64) {
	var failed atomic.Int64
	return func(ctx context.Context, ev projection.Event) error {
		if ev.Seq == seq && failed.CompareAndSwap(0, 1) {
			return errors.New("injected failure")
		}
		return h(ctx, ev)
	}, &failed
}
