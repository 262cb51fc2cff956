package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// PoolSpec is one pool of a workload.
type PoolSpec struct {
	ID       string
	Capacity int
	Hot      bool
}

// Workload is the traffic of a history: Clients goroutines, each issuing
// one operation at a time against the instance Targets picks for it.
type Workload struct {
	Pools   []PoolSpec
	Clients int
	// Weights of hold, confirm, release and read (relative).
	Hold, Confirm, Release, Read int
	// HotShare is the fraction of holds and reads aimed at hot pools.
	HotShare float64
	// MaxQuantity of a hold (1..MaxQuantity units).
	MaxQuantity int
	// TTL of every hold: long, so that expiry never enters the model.
	TTL string
	// Timeout of one request; past it the outcome is unknown.
	Timeout time.Duration
	// Targets are the base URLs of the instances; client i uses
	// Targets[i % len(Targets)].
	Targets []string
	// RunID makes reservation ids unique across runs on one stream.
	RunID string
	// OnOK, if set, is called after each acknowledged operation.
	OnOK func(Op)
}

// DefaultWorkload is a mix of few small hot pools and some cold ones.
func DefaultWorkload(targets []string, clients int) Workload {
	w := Workload{
		Clients: clients, Hold: 45, Confirm: 15, Release: 20, Read: 20,
		HotShare: 0.7, MaxQuantity: 2, TTL: "1h", Timeout: 3 * time.Second,
		Targets: targets, RunID: fmt.Sprintf("r%x", rand.Uint32()),
	}
	for i := range 3 {
		w.Pools = append(w.Pools, PoolSpec{ID: fmt.Sprintf("hot-%d", i), Capacity: 6 + 2*i, Hot: true})
	}
	for i := range 6 {
		w.Pools = append(w.Pools, PoolSpec{ID: fmt.Sprintf("cold-%d", i), Capacity: 500})
	}
	return w
}

// Define defines every pool of the workload through the first target,
// retrying while the service comes up.
func (w *Workload) Define(ctx context.Context, region string) error {
	c := NewClient(w.Targets[0], 5*time.Second)
	defer c.Close()
	starts := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	for _, p := range w.Pools {
		def := PoolDefinition{
			Region: region, Kind: "delivery", Capacity: p.Capacity,
			StartsAt: starts.Format(time.RFC3339), EndsAt: starts.Add(time.Hour).Format(time.RFC3339),
		}
		if err := c.DefinePool(ctx, p.ID, def); err != nil {
			return err
		}
	}
	return nil
}

// Capacities maps pool id to capacity.
func (w *Workload) Capacities() map[string]int {
	m := make(map[string]int, len(w.Pools))
	for _, p := range w.Pools {
		m[p.ID] = p.Capacity
	}
	return m
}

// Traffic is a running workload.
type Traffic struct {
	rec    *Recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ok     atomic.Int64
	total  atomic.Int64
}

// Start runs the workload until Stop, recording into rec.
func (w *Workload) Start(rec *Recorder) *Traffic {
	ctx, cancel := context.WithCancel(context.Background())
	t := &Traffic{rec: rec, cancel: cancel}
	// Each start draws its own id prefix: a workload started twice on one
	// stream must not reuse reservation ids.
	prefix := fmt.Sprintf("%s%x", w.RunID, rand.Uint32())
	for i := range w.Clients {
		t.wg.Go(func() { w.client(ctx, t, i, prefix) })
	}
	return t
}

// Stop ends the traffic and waits for every client's last operation.
func (t *Traffic) Stop() {
	t.cancel()
	t.wg.Wait()
}

// OK is how many operations have been acknowledged so far.
func (t *Traffic) OK() int64 { return t.ok.Load() }

// Total is how many operations have finished so far.
func (t *Traffic) Total() int64 { return t.total.Load() }

// WaitOK waits until n more operations than now are acknowledged, or ctx ends.
func (t *Traffic) WaitOK(ctx context.Context, n int64) error {
	target := t.ok.Load() + n
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for t.ok.Load() < target {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d acknowledgements: %w", n-(target-t.ok.Load()), n, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// live is a reservation a client may confirm or release.
type live struct {
	pool, id string
}

func (w *Workload) client(ctx context.Context, t *Traffic, id int, prefix string) {
	target := id % len(w.Targets)
	c := NewClient(w.Targets[target], w.Timeout)
	defer c.Close()
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	var hot, cold []PoolSpec
	for _, p := range w.Pools {
		if p.Hot {
			hot = append(hot, p)
		} else {
			cold = append(cold, p)
		}
	}
	pickPool := func() string {
		if len(cold) == 0 || len(hot) > 0 && rng.Float64() < w.HotShare {
			return hot[rng.IntN(len(hot))].ID
		}
		return cold[rng.IntN(len(cold))].ID
	}
	var mine []live // holds (ok or unknown) not yet released
	seq := 0
	total := w.Hold + w.Confirm + w.Release + w.Read
	for ctx.Err() == nil {
		op := Op{Client: id, Target: target}
		n := rng.IntN(total)
		switch {
		case n < w.Hold:
			seq++
			op.Kind, op.Pool, op.Quantity = KindHold, pickPool(), 1+rng.IntN(w.MaxQuantity)
			op.ReservationID = fmt.Sprintf("%s-c%d-%d", prefix, id, seq)
		case n < w.Hold+w.Confirm && len(mine) > 0:
			l := mine[rng.IntN(len(mine))]
			op.Kind, op.Pool, op.ReservationID = KindConfirm, l.pool, l.id
		case n < w.Hold+w.Confirm+w.Release && len(mine) > 0:
			i := rng.IntN(len(mine))
			l := mine[i]
			mine = append(mine[:i], mine[i+1:]...)
			op.Kind, op.Pool, op.ReservationID = KindRelease, l.pool, l.id
		default:
			op.Kind, op.Pool = KindRead, pickPool()
		}
		w.do(c, t.rec, &op)
		t.rec.Add(op)
		t.total.Add(1)
		if op.Outcome == OK {
			t.ok.Add(1)
			if w.OnOK != nil {
				w.OnOK(op)
			}
		}
		if op.Kind == KindHold && op.Outcome != Rejected {
			mine = append(mine, live{op.Pool, op.ReservationID})
		}
		if op.Outcome == Unknown {
			// The service is probably down: don't spin on refused connections.
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(10+rng.IntN(20)) * time.Millisecond):
			}
		}
	}
}

// do sends op and fills in its outcome and times. The request does not
// take the traffic's context: an operation once called runs to its end
// (or its timeout), so stopping the traffic does not manufacture unknowns.
func (w *Workload) do(c *Client, rec *Recorder, op *Op) {
	ctx := context.Background()
	var r Response
	op.Call = rec.Now()
	switch op.Kind {
	case KindHold:
		r = c.Do(ctx, http.MethodPost, "/v1/pools/"+op.Pool+"/holds",
			HoldRequest{ReservationID: op.ReservationID, Quantity: op.Quantity, TTL: w.TTL}, nil)
	case KindConfirm:
		r = c.Do(ctx, http.MethodPost, "/v1/pools/"+op.Pool+"/reservations/"+op.ReservationID+"/confirm", nil, nil)
	case KindRelease:
		r = c.Do(ctx, http.MethodPost, "/v1/pools/"+op.Pool+"/reservations/"+op.ReservationID+"/release", nil, nil)
	case KindRead:
		r = c.Do(ctx, http.MethodGet, "/v1/pools/"+op.Pool, nil, nil)
	}
	op.Return = rec.Now()
	fill(op, r)
}

// fill copies a classified answer into op.
func fill(op *Op, r Response) {
	op.Outcome, op.Status, op.Problem = r.Outcome, r.Status, r.Problem
	if r.Err != nil {
		op.Err = r.Err.Error()
	}
	if op.Outcome != OK {
		return
	}
	switch op.Kind {
	case KindRead:
		var p PoolDoc
		if err := r.Decode(&p); err != nil {
			op.Outcome, op.Err = Unknown, "decoding pool: "+err.Error()
			return
		}
		op.Capacity, op.Held, op.Confirmed = p.Capacity, p.Held, p.Confirmed
	default:
		var res ReservationDoc
		if err := r.Decode(&res); err != nil {
			op.Outcome, op.Err = Unknown, "decoding reservation: "+err.Error()
			return
		}
		op.ResStatus = res.Status
	}
}
