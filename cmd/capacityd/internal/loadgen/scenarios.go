package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capacityd/capacityd/web/natsapi"
)

// Scenario names.
const (
	HotPool   = "hot-pool"
	ManyPools = "many-pools"
	Mixed     = "mixed"
	Durable   = "durable" // hot-pool against a service that fsyncs before every ack
	NATS      = "nats"    // hot-pool's holds over NATS request/reply (the micro service), not HTTP
	// Bookings is two-pool bookings (a slot and picking capacity) beside
	// single-pool holds on the slots, in the default durable mode.
	Bookings = "bookings"
)

// Scenarios lists every scenario in the order `all` runs them.
var Scenarios = []string{HotPool, NATS, ManyPools, Mixed, Durable, Bookings}

// The pools of Bookings: slot pools and picking pools; a booking takes one
// of each.
const (
	bookingSlots = 1000
	bookingPicks = 50
)

// Shape of the load.
const (
	bigCapacity   = 1_000_000_000 // capacity.MaxCapacity: hot and many pools never fill up
	mixedCapacity = 50            // small, so mixed meets insufficient-capacity now and then
	mixedKinds    = 10            // mixed spreads its pools over this many kinds
	holdTTL       = "1h"          // longer than any run: no hold expires under the bench
	readsPerWrite = 10
	// availabilityRetry is how long mixed reads use GET /v1/pools/{id} after
	// GET /v1/availability answered 503.
	availabilityRetry = time.Second
)

// WorkloadConfig describes the pools and the load of one scenario.
type WorkloadConfig struct {
	Scenario string          // HotPool, ManyPools, Mixed or Durable
	Client   *Client         // where the requests go (setup and checks too, for NATS)
	NATS     *natsapi.Client // where NATS's holds go
	Clients  int             // concurrent clients
	Pools    int             // pools of ManyPools and Mixed
	Region   string          // region of the pools
	Prefix   string          // pool id prefix, unique per run, so a running service's pools are never reused
}

// pool is one pool the workload defined.
type pool struct {
	id, kind  string
	capacity  int
	holdsPath string // /v1/pools/{id}/holds
}

// ledger is one client's account of one pool: what the service said yes to.
// Verify compares the sum over clients with what the pool reports.
type ledger struct {
	held      int64 // quantity of holds answered 201
	confirmed int64 // quantity of holds confirmed (200)
	released  int64 // quantity of holds released (200)
	unknown   int64 // quantity of writes with no definite answer (transport error, 5xx)
}

// reservation is a hold a mixed client may confirm or release later.
type reservation struct {
	pool     int
	id       string
	quantity int64
}

// clientState is what one client keeps; only that client touches it.
type clientState struct {
	rng    *rand.Rand
	next   uint64
	ledger []ledger
	held   []reservation
}

// Workload is the load of one scenario: it defines its pools, runs
// operations and checks the pools against its ledgers at the end.
type Workload struct {
	cfg     WorkloadConfig
	pools   []pool
	clients []clientState
	// downUntil (unix nanoseconds) is set a second ahead whenever GET
	// /v1/availability answers 503: until then mixed reads fall back to GET
	// /v1/pools/{id}. unavailable counts the 503s, warmup's included.
	downUntil   atomic.Int64
	unavailable atomic.Int64
}

// NewWorkload returns the workload of cfg.Scenario.
func NewWorkload(cfg WorkloadConfig) (*Workload, error) {
	n := 1
	capacity := bigCapacity
	switch cfg.Scenario {
	case HotPool, Durable:
	case NATS:
		if cfg.NATS == nil {
			return nil, fmt.Errorf("%s needs a NATS client", cfg.Scenario)
		}
	case ManyPools:
		n = cfg.Pools
	case Mixed:
		n, capacity = cfg.Pools, mixedCapacity
	case Bookings:
		n = bookingSlots + bookingPicks
	default:
		return nil, fmt.Errorf("unknown scenario %q", cfg.Scenario)
	}
	if n < 1 {
		return nil, fmt.Errorf("%s needs at least one pool", cfg.Scenario)
	}
	wl := &Workload{cfg: cfg, pools: make([]pool, n), clients: make([]clientState, max(cfg.Clients, 1))}
	for i := range wl.pools {
		id := cfg.Prefix + "-hot"
		switch {
		case cfg.Scenario == Bookings && i >= bookingSlots:
			id = fmt.Sprintf("%s-pick%03d", cfg.Prefix, i-bookingSlots)
		case cfg.Scenario == Bookings:
			id = fmt.Sprintf("%s-slot%04d", cfg.Prefix, i)
		case n > 1:
			id = fmt.Sprintf("%s-p%05d", cfg.Prefix, i)
		}
		wl.pools[i] = pool{id: id, kind: "bench-k" + strconv.Itoa(i%mixedKinds), capacity: capacity,
			holdsPath: "/v1/pools/" + id + "/holds"}
	}
	for w := range wl.clients {
		wl.clients[w] = clientState{rng: rand.New(rand.NewPCG(uint64(w), 0x6361706163697479)), ledger: make([]ledger, n)}
	}
	return wl, nil
}

// Pools returns how many pools the workload uses.
func (wl *Workload) Pools() int { return len(wl.pools) }

// Setup defines the workload's pools, from as many clients as the load uses.
func (wl *Workload) Setup(ctx context.Context) error {
	starts := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	return wl.forEachPool(ctx, func(i int) error {
		p := wl.pools[i]
		body := fmt.Sprintf(`{"region":%q,"kind":%q,"starts_at":%q,"ends_at":%q,"capacity":%d}`, wl.cfg.Region, p.kind,
			starts.Format(time.RFC3339), starts.Add(time.Hour).Format(time.RFC3339), p.capacity)
		out := wl.cfg.Client.Do(ctx, "define", http.MethodPut, "/v1/pools/"+p.id, []byte(body), nil)
		if out.Err != nil || out.Status != http.StatusCreated && out.Status != http.StatusOK {
			return fmt.Errorf("defining pool %s: %s", p.id, describe(out))
		}
		return nil
	})
}

// Op runs one operation of the scenario as client w.
func (wl *Workload) Op(ctx context.Context, w int) Outcome {
	c := &wl.clients[w]
	if wl.cfg.Scenario == Bookings {
		slot := c.rng.IntN(bookingSlots)
		if w%2 == 1 {
			out, _ := wl.hold(ctx, w, slot, 1)
			return out
		}
		return wl.book(ctx, w, slot, bookingSlots+c.rng.IntN(bookingPicks))
	}
	if wl.cfg.Scenario != Mixed {
		i := 0
		if len(wl.pools) > 1 {
			i = c.rng.IntN(len(wl.pools))
		}
		out, _ := wl.hold(ctx, w, i, 1)
		return out
	}
	if c.rng.IntN(readsPerWrite+1) < readsPerWrite {
		return wl.read(ctx, c)
	}
	if len(c.held) > 0 && c.rng.IntN(3) > 0 {
		k := c.rng.IntN(len(c.held))
		r := c.held[k]
		c.held[k] = c.held[len(c.held)-1]
		c.held = c.held[:len(c.held)-1]
		op := "confirm"
		if c.rng.IntN(2) == 0 {
			op = "release"
		}
		out := wl.cfg.Client.Do(ctx, op, http.MethodPost, "/v1/pools/"+wl.pools[r.pool].id+"/reservations/"+r.id+"/"+op, nil, nil)
		l := &c.ledger[r.pool]
		switch {
		case !definite(out):
			l.unknown += r.quantity
		case out.Status == http.StatusOK && op == "confirm":
			l.confirmed += r.quantity
		case out.Status == http.StatusOK:
			l.released += r.quantity
		}
		return out
	}
	i := c.rng.IntN(len(wl.pools))
	qty := int64(1 + c.rng.IntN(3))
	out, id := wl.hold(ctx, w, i, qty)
	if out.Status == http.StatusCreated {
		c.held = append(c.held, reservation{pool: i, id: id, quantity: qty})
	}
	return out
}

// hold holds qty of pool i with a new reservation id and keeps the account.
func (wl *Workload) hold(ctx context.Context, w, i int, qty int64) (Outcome, string) {
	c := &wl.clients[w]
	c.next++
	id := "c" + strconv.Itoa(w) + "-" + strconv.FormatUint(c.next, 10)
	body := make([]byte, 0, 80)
	body = append(body, `{"reservation_id":"`...)
	body = append(body, id...)
	body = append(body, `","quantity":`...)
	body = strconv.AppendInt(body, qty, 10)
	body = append(body, `,"ttl":"`+holdTTL+`"}`...)
	var out Outcome
	if wl.cfg.Scenario == NATS {
		out = holdOverNATS(ctx, wl.cfg.NATS, wl.pools[i].id, body)
	} else {
		out = wl.cfg.Client.Do(ctx, "hold", http.MethodPost, wl.pools[i].holdsPath, body, nil)
	}
	switch {
	case !definite(out):
		c.ledger[i].unknown += qty
	case out.Status == http.StatusCreated:
		c.ledger[i].held += qty
	}
	return out, id
}

// book books one unit of each of two pools with a new booking id and keeps
// the account of both.
func (wl *Workload) book(ctx context.Context, w, a, b int) Outcome {
	c := &wl.clients[w]
	c.next++
	id := "b" + strconv.Itoa(w) + "-" + strconv.FormatUint(c.next, 10)
	body := fmt.Sprintf(`{"booking_id":%q,"items":[{"pool":%q,"quantity":1},{"pool":%q,"quantity":1}],"ttl":%q}`,
		id, wl.pools[a].id, wl.pools[b].id, holdTTL)
	out := wl.cfg.Client.Do(ctx, "book", http.MethodPost, "/v1/bookings", []byte(body), nil)
	for _, i := range []int{a, b} {
		switch {
		case !definite(out):
			c.ledger[i].unknown++
		case out.Status == http.StatusCreated:
			c.ledger[i].held++
		}
	}
	return out
}

// holdOverNATS sends a hold to the micro service and reports it as the
// HTTP API would have answered: 201, or the refusal's status and problem.
func holdOverNATS(ctx context.Context, c *natsapi.Client, pool string, body []byte) Outcome {
	_, err := c.Request(ctx, natsapi.OpHold, []string{pool}, body, nil)
	var refusal *natsapi.Error
	switch {
	case err == nil:
		return Outcome{Op: "hold", Status: http.StatusCreated} // ids are unique: never a repeat
	case errors.As(err, &refusal):
		return Outcome{Op: "hold", Status: refusal.Status, Problem: refusal.Code}
	}
	return Outcome{Op: "hold", Err: err}
}

// read is a mixed read: the availability read model, or the pool itself
// once the read model has answered 503.
func (wl *Workload) read(ctx context.Context, c *clientState) Outcome {
	if time.Now().UnixNano() >= wl.downUntil.Load() {
		q := url.Values{"region": {wl.cfg.Region}, "kind": {"bench-k" + strconv.Itoa(c.rng.IntN(mixedKinds))}}
		out := wl.cfg.Client.Do(ctx, "read-availability", http.MethodGet, "/v1/availability?"+q.Encode(), nil, nil)
		if out.Status == http.StatusServiceUnavailable {
			wl.unavailable.Add(1)
			wl.downUntil.Store(time.Now().Add(availabilityRetry).UnixNano())
		}
		return out
	}
	return wl.cfg.Client.Do(ctx, "read-pool", http.MethodGet, "/v1/pools/"+wl.pools[c.rng.IntN(len(wl.pools))].id, nil, nil)
}

// AvailabilityUnavailable returns how many times GET /v1/availability
// answered 503, after each of which mixed reads fell back to GET
// /v1/pools/{id} for a second.
func (wl *Workload) AvailabilityUnavailable() int64 { return wl.unavailable.Load() }

// definite reports whether the service's answer says for sure whether a
// write happened: any answer below 500. No answer or a 5xx (a timeout
// inside the service, say) may or may not have been written.
func definite(o Outcome) bool { return o.Err == nil && o.Status > 0 && o.Status < 500 }

// Correctness is the end-of-run check of every pool the scenario used.
type Correctness struct {
	Passed            bool     `json:"passed"`
	Pools             int      `json:"pools"`
	Held              int64    `json:"held"`               // sum of the pools' held
	Confirmed         int64    `json:"confirmed"`          // sum of the pools' confirmed
	ExpectedHeld      int64    `json:"expected_held"`      // successful holds - confirmed - released, from the bench's ledger
	ExpectedConfirmed int64    `json:"expected_confirmed"` // successful confirms, from the bench's ledger
	Released          int64    `json:"released"`           // successful releases, from the bench's ledger
	Unknown           int64    `json:"unknown"`            // quantity written without a definite answer
	OverCapacity      int      `json:"over_capacity"`      // pools with held+confirmed > capacity
	Problems          []string `json:"problems,omitempty"`
}

// maxProblems is how many problems a Correctness lists.
const maxProblems = 10

// Verify reads every pool and checks it: held+confirmed never above
// capacity, and held and confirmed equal to what the service said yes to.
// Writes without a definite answer widen the check to a range.
func (wl *Workload) Verify(ctx context.Context) Correctness {
	var mu sync.Mutex
	c := Correctness{Pools: len(wl.pools)}
	problem := func(format string, args ...any) {
		if len(c.Problems) < maxProblems {
			c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
		}
	}
	err := wl.forEachPool(ctx, func(i int) error {
		var want ledger
		for w := range wl.clients {
			l := wl.clients[w].ledger[i]
			want.held += l.held
			want.confirmed += l.confirmed
			want.released += l.released
			want.unknown += l.unknown
		}
		var got struct {
			Capacity, Held, Confirmed int64
			OverCapacity              bool `json:"over_capacity"`
		}
		out := wl.cfg.Client.Do(ctx, "verify", http.MethodGet, "/v1/pools/"+wl.pools[i].id, nil, &got)
		mu.Lock()
		defer mu.Unlock()
		if out.Err != nil || out.Status != http.StatusOK {
			problem("pool %s: %s", wl.pools[i].id, describe(out))
			return nil
		}
		wantHeld := want.held - want.confirmed - want.released
		c.Held += got.Held
		c.Confirmed += got.Confirmed
		c.ExpectedHeld += wantHeld
		c.ExpectedConfirmed += want.confirmed
		c.Released += want.released
		c.Unknown += want.unknown
		booked := got.Held + got.Confirmed
		if booked > got.Capacity || got.OverCapacity {
			c.OverCapacity++
			problem("pool %s over capacity: held %d + confirmed %d > capacity %d", wl.pools[i].id, got.Held, got.Confirmed, got.Capacity)
		}
		switch {
		case want.unknown == 0 && (got.Held != wantHeld || got.Confirmed != want.confirmed):
			problem("pool %s: held %d confirmed %d, want held %d confirmed %d", wl.pools[i].id, got.Held, got.Confirmed, wantHeld, want.confirmed)
		case want.unknown > 0 && (booked < wantHeld+want.confirmed-want.unknown || booked > wantHeld+want.confirmed+want.unknown):
			problem("pool %s: held+confirmed %d, want %d ± %d unanswered", wl.pools[i].id, booked, wantHeld+want.confirmed, want.unknown)
		}
		return nil
	})
	if err != nil {
		problem("%v", err)
	}
	c.Passed = len(c.Problems) == 0
	return c
}

// forEachPool calls f for every pool index from up to cfg.Clients
// goroutines and returns the first error; it stops handing out pools after
// an error or when ctx ends.
func (wl *Workload) forEachPool(ctx context.Context, f func(i int) error) error {
	var next atomic.Int64
	var once sync.Once
	var first error
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(max(wl.cfg.Clients, 1), len(wl.pools)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(wl.pools) && !failed.Load() && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// describe says what went wrong with one request.
func describe(o Outcome) string {
	if o.Err != nil {
		return o.Err.Error()
	}
	if o.Problem != "" {
		return fmt.Sprintf("status %d (%s)", o.Status, o.Problem)
	}
	return fmt.Sprintf("status %d", o.Status)
}
