package natsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Forwarding. A region writes only the pools it is the writer of; a write
// that reaches another region is sent, whole, to the writer's service on
// capacityd.<writer>.forward.<pool> and its answer is returned as if it had
// been carried out here. The subject names the writer region, and only that
// region's instances subscribe to it (queue group per region), so the
// request crosses the leaf link to exactly one of them. The operation
// travels as the domain command (JSON of capacity's types), not as an HTTP
// body: every write of web.Pools, bookings and extensions included, has
// one path, and the answer comes back as the pools.Result the local write
// side would have returned.

// OpForward is the operation a region forwards writes on:
// capacityd.<region>.forward.<pool>. Internal to capacityd: its body is
// the domain command, not the public API's.
const OpForward = "forward"

// OpFence is what a region promoting this one's pools asks it, on
// capacityd.<region>.fence: stop writing them, answer the last sequence.
const OpFence = "fence"

func (s *Service) fence(ctx context.Context, _ []string, req micro.Request) (any, error) {
	if s.cfg.Fence == nil {
		return nil, capacity.Errorf(capacity.EUNAVAILABLE, "this instance does not take part in promotions")
	}
	return s.cfg.Fence(ctx, req.Data())
}

// DefaultForwardTimeout bounds a forwarded operation: past it the answer
// is 503 region-unavailable, and the write's outcome is unknown (a retry
// with the same reservation or booking id is idempotent).
const DefaultForwardTimeout = 2 * time.Second

// forwardRequest is one forwarded operation of web.Pools.
type forwardRequest struct {
	Op   string `json:"op"`
	Pool string `json:"pool,omitempty"`
	// Execute's command: exactly one is set.
	Define  *capacity.DefinePool `json:"define,omitempty"`
	Change  *capacity.ChangePool `json:"change,omitempty"`
	Hold    *capacity.Hold       `json:"hold,omitempty"`
	Confirm *capacity.Confirm    `json:"confirm,omitempty"`
	Extend  *capacity.Extend     `json:"extend,omitempty"`
	Release *capacity.Release    `json:"release,omitempty"`
	// Reads and bookings.
	ID    string                 `json:"id,omitempty"`
	Book  *capacity.Book         `json:"book,omitempty"`
	TTL   time.Duration          `json:"ttl,omitempty"`
	Items []capacity.BookingItem `json:"items,omitempty"`
}

// forwardReply is the answer: the one field of the operation's result.
type forwardReply struct {
	Result      *pools.Result         `json:"result,omitempty"`
	Booking     *pools.Booking        `json:"booking,omitempty"`
	Pool        *capacity.PoolView    `json:"pool,omitempty"`
	Reservation *capacity.Reservation `json:"reservation,omitempty"`
}

// Forwarded operations.
const (
	fwExecute        = "execute"
	fwPool           = "pool"
	fwReservation    = "reservation"
	fwBook           = "book"
	fwBooking        = "booking"
	fwConfirmBooking = "confirm-booking"
	fwReleaseBooking = "release-booking"
	fwExtendBooking  = "extend-booking"
)

// commandRequest puts cmd in a request; false for a command that is never
// forwarded (expiries, reads: the writer does them itself).
func commandRequest(pool string, cmd capacity.Command) (forwardRequest, bool) {
	r := forwardRequest{Op: fwExecute, Pool: pool}
	switch c := cmd.(type) {
	case capacity.DefinePool:
		r.Define = &c
	case capacity.ChangePool:
		r.Change = &c
	case capacity.Hold:
		r.Hold = &c
	case capacity.Confirm:
		r.Confirm = &c
	case capacity.Extend:
		r.Extend = &c
	case capacity.Release:
		r.Release = &c
	default:
		return r, false
	}
	return r, true
}

// command is the request's command, nil if none is set.
func (r forwardRequest) command() capacity.Command {
	switch {
	case r.Define != nil:
		return *r.Define
	case r.Change != nil:
		return *r.Change
	case r.Hold != nil:
		return *r.Hold
	case r.Confirm != nil:
		return *r.Confirm
	case r.Extend != nil:
		return *r.Extend
	case r.Release != nil:
		return *r.Release
	}
	return nil
}

// forward carries out a forwarded operation with this region's own write
// side (Config.Local), never forwarding it again: a region that is not the
// writer of the pool any more (fenced) refuses it with 503.
func (s *Service) forward(ctx context.Context, _ []string, req micro.Request) (any, error) {
	var r forwardRequest
	if err := json.Unmarshal(req.Data(), &r); err != nil {
		return nil, capacity.Errorf(capacity.EINVALID, "forwarded request: %v", err)
	}
	local := s.cfg.Local
	if local == nil {
		local = s.cfg.Pools
	}
	pool := r.Pool
	if pool == "" && r.Book != nil && len(r.Book.Items) > 0 {
		pool = r.Book.Items[0].Pool
	}
	if pool == "" && len(r.Items) > 0 {
		pool = r.Items[0].Pool
	}
	if s.cfg.Writer != nil && pool != "" {
		if w := s.cfg.Writer(pool); w != s.cfg.Region {
			return nil, &capacity.Error{Code: capacity.EREGION, Region: w,
				Message: fmt.Sprintf("region %s does not write pool %s (region %s does): nothing was written", s.cfg.Region, pool, w)}
		}
	}
	var out forwardReply
	switch r.Op {
	case fwExecute:
		cmd := r.command()
		if cmd == nil {
			return nil, capacity.Errorf(capacity.EINVALID, "forwarded request without a command")
		}
		res, err := local.Execute(ctx, r.Pool, cmd)
		if err != nil {
			return nil, err
		}
		out.Result = &res
	case fwPool:
		v, err := local.Pool(ctx, r.Pool)
		if err != nil {
			return nil, err
		}
		out.Pool = &v
	case fwReservation:
		v, err := local.Reservation(ctx, r.Pool, r.ID)
		if err != nil {
			return nil, err
		}
		out.Reservation = &v
	case fwBook:
		if r.Book == nil {
			return nil, capacity.Errorf(capacity.EINVALID, "forwarded booking without a booking")
		}
		b, err := local.Book(ctx, *r.Book)
		if err != nil {
			return nil, err
		}
		out.Booking = &b
	case fwBooking, fwConfirmBooking, fwReleaseBooking, fwExtendBooking:
		var b pools.Booking
		var err error
		switch r.Op {
		case fwBooking:
			b, err = local.Booking(ctx, r.ID, r.Items)
		case fwConfirmBooking:
			b, err = local.ConfirmBooking(ctx, r.ID, r.Items)
		case fwReleaseBooking:
			b, err = local.ReleaseBooking(ctx, r.ID, r.Items)
		default:
			b, err = local.ExtendBooking(ctx, r.ID, r.TTL, r.Items)
		}
		if err != nil {
			return nil, err
		}
		out.Booking = &b
	default:
		return nil, capacity.Errorf(capacity.EINVALID, "forwarded operation %q unknown", r.Op)
	}
	return out, nil
}

// Router is the write side every region's HTTP API and NATS service use:
// a pool this region writes goes to the local write side, any other to the
// region that writes it now, over NATS (OpForward). It implements
// web.Pools.
type Router struct {
	local   Pools
	nc      *nats.Conn
	region  string
	writer  func(pool string) string
	timeout time.Duration

	mu      sync.Mutex
	clients map[string]*Client
	// Forwarded counts forwarded operations by writer region (read it with
	// ForwardedTo).
	forwarded map[string]int64
}

// NewRouter returns a router for region over local, forwarding on nc.
// writer names the region that writes a pool now (region itself for
// pools it writes or does not know); timeout bounds each forwarded
// operation (0: DefaultForwardTimeout).
func NewRouter(local Pools, nc *nats.Conn, region string, writer func(pool string) string, timeout time.Duration) *Router {
	if timeout <= 0 {
		timeout = DefaultForwardTimeout
	}
	return &Router{local: local, nc: nc, region: region, writer: writer, timeout: timeout,
		clients: map[string]*Client{}, forwarded: map[string]int64{}}
}

// ForwardedTo returns how many operations were forwarded to region.
func (r *Router) ForwardedTo(region string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forwarded[region]
}

// writerOf returns the writer of pool, "" when it is this region.
func (r *Router) writerOf(pool string) string {
	if w := r.writer(pool); w != "" && w != r.region {
		return w
	}
	return ""
}

// send forwards req to region and decodes its answer.
func (r *Router) send(ctx context.Context, region string, req forwardRequest) (forwardReply, error) {
	var out forwardReply
	body, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	r.mu.Lock()
	c := r.clients[region]
	if c == nil {
		c = NewClient(r.nc, region)
		r.clients[region] = c
	}
	r.forwarded[region]++
	r.mu.Unlock()
	pool := req.Pool
	if pool == "" {
		pool = "_"
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	data, err := c.Request(ctx, OpForward, []string{pool}, body, nil)
	var refusal *Error
	switch {
	case errors.As(err, &refusal):
		return out, refusal.domain()
	case errors.Is(err, nats.ErrNoResponders):
		return out, &capacity.Error{Code: capacity.EREGION, Region: region,
			Message: fmt.Sprintf("region %s writes this pool and is not reachable: nothing was written", region)}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return out, &capacity.Error{Code: capacity.EREGION, Region: region,
			Message: fmt.Sprintf("region %s writes this pool and did not answer within %s: the outcome is unknown, retry with the same id", region, r.timeout)}
	case err != nil:
		return out, &capacity.Error{Code: capacity.EREGION, Region: region,
			Message: fmt.Sprintf("region %s writes this pool and could not be asked: %v", region, err)}
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("natsapi: answer of region %s: %w", region, err)
	}
	return out, nil
}

// domain turns a refusal of another region back into the domain error the
// local write side would have returned; an internal error stays internal.
func (e *Error) domain() error {
	if e.Code == capacity.EINTERNAL || e.Code == "" {
		return fmt.Errorf("natsapi: forwarded: %w", e)
	}
	var p struct {
		Pool   string `json:"pool"`
		Region string `json:"region"`
	}
	_ = json.Unmarshal(e.Problem, &p)
	return &capacity.Error{Code: e.Code, Message: e.Detail, Pool: p.Pool, Region: p.Region}
}

// Execute implements web.Pools.
func (r *Router) Execute(ctx context.Context, pool string, cmd capacity.Command) (pools.Result, error) {
	w := r.writerOf(pool)
	if w == "" {
		return r.local.Execute(ctx, pool, cmd)
	}
	req, ok := commandRequest(pool, cmd)
	if !ok {
		return r.local.Execute(ctx, pool, cmd)
	}
	out, err := r.send(ctx, w, req)
	if err != nil || out.Result == nil {
		return pools.Result{}, orMissing(err, w)
	}
	return *out.Result, nil
}

// Pool implements web.Pools: a pool another region writes is read there,
// strongly consistent as a local one.
func (r *Router) Pool(ctx context.Context, pool string) (capacity.PoolView, error) {
	w := r.writerOf(pool)
	if w == "" {
		return r.local.Pool(ctx, pool)
	}
	out, err := r.send(ctx, w, forwardRequest{Op: fwPool, Pool: pool})
	if err != nil || out.Pool == nil {
		return capacity.PoolView{}, orMissing(err, w)
	}
	return *out.Pool, nil
}

// Reservation implements web.Pools.
func (r *Router) Reservation(ctx context.Context, pool, id string) (capacity.Reservation, error) {
	w := r.writerOf(pool)
	if w == "" {
		return r.local.Reservation(ctx, pool, id)
	}
	out, err := r.send(ctx, w, forwardRequest{Op: fwReservation, Pool: pool, ID: id})
	if err != nil || out.Reservation == nil {
		return capacity.Reservation{}, orMissing(err, w)
	}
	return *out.Reservation, nil
}

// bookingWriter returns the writer of a booking's pools ("" for this
// region); a booking whose pools are written by different regions is
// refused: one atomic batch needs one stream.
func (r *Router) bookingWriter(items []capacity.BookingItem) (string, error) {
	if len(items) == 0 {
		return "", nil
	}
	w := r.writerOf(items[0].Pool)
	for _, it := range items[1:] {
		if other := r.writerOf(it.Pool); other != w {
			return "", &capacity.Error{Code: capacity.EINVALID, Pool: it.Pool,
				Message: fmt.Sprintf("a booking's pools must be written by one region: %s and %s are not", items[0].Pool, it.Pool)}
		}
	}
	return w, nil
}

// Book implements web.Pools.
func (r *Router) Book(ctx context.Context, b capacity.Book) (pools.Booking, error) {
	w, err := r.bookingWriter(b.Items)
	if err != nil {
		return pools.Booking{}, err
	}
	if w == "" {
		return r.local.Book(ctx, b)
	}
	return r.booking(ctx, w, forwardRequest{Op: fwBook, Book: &b})
}

func (r *Router) booking(ctx context.Context, w string, req forwardRequest) (pools.Booking, error) {
	out, err := r.send(ctx, w, req)
	if err != nil || out.Booking == nil {
		return pools.Booking{}, orMissing(err, w)
	}
	return *out.Booking, nil
}

// bookingOp runs a booking operation locally or forwards it.
func (r *Router) bookingOp(ctx context.Context, op, id string, ttl time.Duration, items []capacity.BookingItem, local func() (pools.Booking, error)) (pools.Booking, error) {
	w, err := r.bookingWriter(items)
	if err != nil {
		return pools.Booking{}, err
	}
	if w == "" {
		return local()
	}
	return r.booking(ctx, w, forwardRequest{Op: op, ID: id, TTL: ttl, Items: items})
}

// Booking implements web.Pools.
func (r *Router) Booking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error) {
	return r.bookingOp(ctx, fwBooking, id, 0, items, func() (pools.Booking, error) { return r.local.Booking(ctx, id, items) })
}

// ConfirmBooking implements web.Pools.
func (r *Router) ConfirmBooking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error) {
	return r.bookingOp(ctx, fwConfirmBooking, id, 0, items, func() (pools.Booking, error) { return r.local.ConfirmBooking(ctx, id, items) })
}

// ReleaseBooking implements web.Pools.
func (r *Router) ReleaseBooking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error) {
	return r.bookingOp(ctx, fwReleaseBooking, id, 0, items, func() (pools.Booking, error) { return r.local.ReleaseBooking(ctx, id, items) })
}

// ExtendBooking implements web.Pools.
func (r *Router) ExtendBooking(ctx context.Context, id string, ttl time.Duration, items []capacity.BookingItem) (pools.Booking, error) {
	return r.bookingOp(ctx, fwExtendBooking, id, ttl, items, func() (pools.Booking, error) { return r.local.ExtendBooking(ctx, id, ttl, items) })
}

// KnownBooking implements web.Pools: bookings this region's write side
// wrote; a forwarded one is found in the read models.
func (r *Router) KnownBooking(id string) ([]capacity.BookingItem, bool) {
	return r.local.KnownBooking(id)
}

// orMissing is err, or an internal error for an answer without its result.
func orMissing(err error, region string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("natsapi: region %s answered a forwarded operation without its result", region)
}
