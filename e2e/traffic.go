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
	// Booked pools take no plain holds: only bookings write to them
	// (reads take a BookedReadShare of the reads).
	Booked bool
}

// Workload is the traffic of a history: Clients goroutines, each issuing
// one operation at a time against the instance Targets picks for it.
type Workload struct {
	Pools   []PoolSpec
	Clients int
	// Weights of hold, confirm, release and read (relative). Confirm,
	// release and extend pick one of the client's holds or bookings.
	Hold, Confirm, Release, Read int
	// Extend is the weight of extending one of the client's holds or
	// bookings (a new deadline of twice TTL and more: every extension
	// moves it later); Book the weight of a booking.
	Extend, Book int
	// PartialShare is the fraction of a plain hold's confirms that name a
	// quantity (1..held; fewer than held gives the rest back).
	PartialShare float64
	// BookingGroups are the sets of pools a booking draws its 2-3 pools
	// from: the group's first pool (its "picking" pool) and one or two of
	// the others (slots), in random order. The check partitions the
	// history by the pools bookings link, so groups keep those partitions
	// small; and since every write in a group touches its picking pool,
	// a partition holds few operations independent of each other (many
	// would make porcupine's search try every interleaving of them: with
	// bookings across the hot and cold pools a 20 s history took minutes).
	BookingGroups [][]string
	// BookedReadShare is the fraction of reads aimed at Booked pools.
	BookedReadShare float64
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
	// FirstClient is the id of the first client (then FirstClient+1, ...):
	// a workload started again on other targets into the same recorder
	// keeps its clients apart from the earlier ones.
	FirstClient int
}

// DefaultWorkload is a mix of few small hot pools and some cold ones, with
// holds, confirms (some partial), releases, extensions, reads and
// bookings. Bookings take a picking pool and one or two slot pools of one
// of two groups, so bookings overlap each other and are refused when a
// pool of theirs is full.
func DefaultWorkload(targets []string, clients int) Workload {
	w := Workload{
		Clients: clients, Hold: 35, Confirm: 15, Release: 15, Read: 20, Extend: 5, Book: 10,
		PartialShare: 0.4, BookedReadShare: 0.2,
		HotShare: 0.7, MaxQuantity: 2, TTL: "1h", Timeout: 3 * time.Second,
		Targets: targets, RunID: fmt.Sprintf("r%x", rand.Uint32()),
	}
	for i := range 3 {
		w.Pools = append(w.Pools, PoolSpec{ID: fmt.Sprintf("hot-%d", i), Capacity: 6 + 2*i, Hot: true})
	}
	for i := range 6 {
		w.Pools = append(w.Pools, PoolSpec{ID: fmt.Sprintf("cold-%d", i), Capacity: 500})
	}
	for g := range 2 {
		group := []string{fmt.Sprintf("pick-%d", g)}
		w.Pools = append(w.Pools, PoolSpec{ID: group[0], Capacity: 20, Booked: true})
		for i := range 2 {
			group = append(group, fmt.Sprintf("slot-%d-%d", g, i))
			w.Pools = append(w.Pools, PoolSpec{ID: group[i+1], Capacity: 10, Booked: true})
		}
		w.BookingGroups = append(w.BookingGroups, group)
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

// live is a reservation or booking a client may confirm, release or
// extend.
type live struct {
	pool, id string
	qty      int
	items    []Item // a booking's
	position uint64 // a booking's latest position (min_position)
	extends  int    // extensions asked so far
}

func (w *Workload) client(ctx context.Context, t *Traffic, i int, prefix string) {
	target, id := i%len(w.Targets), w.FirstClient+i
	c := NewClient(w.Targets[target], w.Timeout)
	defer c.Close()
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	var hot, cold, booked []PoolSpec
	for _, p := range w.Pools {
		switch {
		case p.Booked:
			booked = append(booked, p)
		case p.Hot:
			hot = append(hot, p)
		default:
			cold = append(cold, p)
		}
	}
	pickPool := func() string {
		if len(cold) == 0 || len(hot) > 0 && rng.Float64() < w.HotShare {
			return hot[rng.IntN(len(hot))].ID
		}
		return cold[rng.IntN(len(cold))].ID
	}
	var mine []live // holds (ok or unknown) and bookings (ok) not yet released
	seq := 0
	ttl, err := time.ParseDuration(w.TTL)
	if err != nil {
		panic(fmt.Sprintf("workload TTL %q: %v", w.TTL, err))
	}
	total := w.Hold + w.Confirm + w.Release + w.Read + w.Extend + w.Book
	for ctx.Err() == nil {
		op := Op{Client: id, Target: target}
		n := rng.IntN(total)
		var picked *live
		pick := func() {
			i := rng.IntN(len(mine))
			picked = &mine[i]
			op.Pool, op.ReservationID = picked.pool, picked.id
			if picked.items != nil {
				op.Items, op.Position = picked.items, picked.position
			}
		}
		switch {
		case n < w.Hold:
			seq++
			op.Kind, op.Pool, op.Quantity = KindHold, pickPool(), 1+rng.IntN(w.MaxQuantity)
			op.ReservationID = fmt.Sprintf("%s-c%d-%d", prefix, id, seq)
		case n < w.Hold+w.Book && len(w.BookingGroups) > 0:
			seq++
			g := w.BookingGroups[rng.IntN(len(w.BookingGroups))]
			op.Kind, op.ReservationID = KindBook, fmt.Sprintf("%s-c%d-b%d", prefix, id, seq)
			op.Items = []Item{{Pool: g[0], Quantity: 1 + rng.IntN(w.MaxQuantity)}}
			for _, i := range rng.Perm(len(g) - 1)[:1+rng.IntN(min(2, len(g)-1))] {
				op.Items = append(op.Items, Item{Pool: g[1+i], Quantity: 1 + rng.IntN(w.MaxQuantity)})
			}
			rng.Shuffle(len(op.Items), func(i, j int) { op.Items[i], op.Items[j] = op.Items[j], op.Items[i] })
			op.Pool = op.Items[0].Pool
		case n < w.Hold+w.Book+w.Confirm && len(mine) > 0:
			pick()
			op.Kind = KindConfirm
			if picked.items != nil {
				op.Kind = KindBookConfirm
			} else if rng.Float64() < w.PartialShare {
				op.Quantity = 1 + rng.IntN(picked.qty)
			}
		case n < w.Hold+w.Book+w.Confirm+w.Extend && len(mine) > 0:
			pick()
			picked.extends++
			op.Kind, op.TTL = KindExtend, (2*ttl + time.Duration(picked.extends)*time.Second).String()
			if picked.items != nil {
				op.Kind = KindBookExtend
			}
		case n < w.Hold+w.Book+w.Confirm+w.Extend+w.Release && len(mine) > 0:
			i := rng.IntN(len(mine))
			l := mine[i]
			mine = append(mine[:i], mine[i+1:]...)
			op.Kind, op.Pool, op.ReservationID = KindRelease, l.pool, l.id
			if l.items != nil {
				op.Kind, op.Items, op.Position = KindBookRelease, l.items, l.position
			}
		case len(booked) > 0 && rng.Float64() < w.BookedReadShare:
			op.Kind, op.Pool = KindRead, booked[rng.IntN(len(booked))].ID
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
			if picked != nil && op.Position > picked.position {
				picked.position = op.Position
			}
		}
		switch {
		case op.Kind == KindHold && op.Outcome != Rejected:
			mine = append(mine, live{pool: op.Pool, id: op.ReservationID, qty: op.Quantity})
		case op.Kind == KindBook && op.Outcome == OK:
			// Only acknowledged bookings are followed up: their position
			// lets another instance (or this one after a restart) find
			// them; a lookup of one that may not exist could answer
			// not-found while the read model lags.
			mine = append(mine, live{pool: op.Pool, id: op.ReservationID, items: op.Items, position: op.Position})
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
		var body any
		if op.Quantity > 0 {
			body = map[string]int{"quantity": op.Quantity}
		}
		r = c.Do(ctx, http.MethodPost, "/v1/pools/"+op.Pool+"/reservations/"+op.ReservationID+"/confirm", body, nil)
	case KindRelease:
		r = c.Do(ctx, http.MethodPost, "/v1/pools/"+op.Pool+"/reservations/"+op.ReservationID+"/release", nil, nil)
	case KindExtend:
		r = c.Do(ctx, http.MethodPost, "/v1/pools/"+op.Pool+"/reservations/"+op.ReservationID+"/extend", map[string]string{"ttl": op.TTL}, nil)
	case KindBook:
		req := BookRequest{BookingID: op.ReservationID, TTL: w.TTL}
		for _, it := range op.Items {
			req.Items = append(req.Items, BookRequestItem{Pool: it.Pool, Quantity: it.Quantity})
		}
		r = c.Do(ctx, http.MethodPost, "/v1/bookings", req, nil)
	case KindBookConfirm:
		r = c.Do(ctx, http.MethodPost, bookingPath(op, "confirm"), nil, nil)
	case KindBookRelease:
		r = c.Do(ctx, http.MethodPost, bookingPath(op, "release"), nil, nil)
	case KindBookExtend:
		r = c.Do(ctx, http.MethodPost, bookingPath(op, "extend"), map[string]string{"ttl": op.TTL}, nil)
	case KindRead:
		r = c.Do(ctx, http.MethodGet, "/v1/pools/"+op.Pool, nil, nil)
	}
	op.Return = rec.Now()
	fill(op, r)
}

// bookingPath is the route of a command on op's booking, with the
// booking's last known position so that any instance finds it.
func bookingPath(op *Op, command string) string {
	return fmt.Sprintf("/v1/bookings/%s/%s?min_position=%d", op.ReservationID, command, op.Position)
}

// fill copies a classified answer into op.
func fill(op *Op, r Response) {
	op.Outcome, op.Status, op.Problem, op.ProblemPool = r.Outcome, r.Status, r.Problem, r.ProblemPool
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
		op.Capacity, op.Held, op.Confirmed, op.Version = p.Capacity, p.Held, p.Confirmed, p.Version
	case KindBook, KindBookConfirm, KindBookRelease, KindBookExtend:
		var b BookingDoc
		if err := r.Decode(&b); err != nil {
			op.Outcome, op.Err = Unknown, "decoding booking: "+err.Error()
			return
		}
		op.ResStatus, op.Position = b.Status, b.Position
	default:
		var res ReservationDoc
		if err := r.Decode(&res); err != nil {
			op.Outcome, op.Err = Unknown, "decoding reservation: "+err.Error()
			return
		}
		op.ResStatus, op.Version = res.Status, res.Version
	}
}
