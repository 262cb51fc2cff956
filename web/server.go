package web

import (
	"context"
	"iter"
	"net/http"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Pools is the write side as the HTTP API uses it; *pools.Service
// implements it. Errors are *capacity.Error values for refusals (their code
// picks the HTTP status) and anything else for internal failures.
type Pools interface {
	// Execute carries out cmd on the pool and returns the result once its
	// events are stored.
	Execute(ctx context.Context, pool string, cmd capacity.Command) (pools.Result, error)
	// Pool returns the pool's current view, strongly consistent; ENOTFOUND
	// when the pool has never been defined.
	Pool(ctx context.Context, pool string) (capacity.PoolView, error)
	// Reservation returns one reservation of a pool; ENOTFOUND when the
	// pool or the reservation does not exist.
	Reservation(ctx context.Context, pool, id string) (capacity.Reservation, error)
	// Book holds a booking's items in all its pools or none; a refusal
	// names the first pool short (capacity.ErrorPool).
	Book(ctx context.Context, b capacity.Book) (pools.Booking, error)
	// Booking, ConfirmBooking, ReleaseBooking and ExtendBooking read or
	// move every pool of a booking together; items are the booking's.
	Booking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error)
	ConfirmBooking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error)
	ReleaseBooking(ctx context.Context, id string, items []capacity.BookingItem) (pools.Booking, error)
	ExtendBooking(ctx context.Context, id string, ttl time.Duration, items []capacity.BookingItem) (pools.Booking, error)
	// KnownBooking returns the items of a booking the write side
	// remembers (it wrote it); else they are found in the read model.
	KnownBooking(id string) ([]capacity.BookingItem, bool)
}

// History reads a pool's own history; every capacity.EventStore (such as
// streams.PoolEvents) implements it.
type History interface {
	// Read yields the pool's events after afterSeq, in order.
	Read(ctx context.Context, pool string, afterSeq uint64) iter.Seq2[capacity.Recorded, error]
	// LastSeq returns the sequence of the pool's last event, 0 if none.
	LastSeq(ctx context.Context, pool string) (uint64, error)
}

// Availability is the read model behind GET /v1/availability
// (*views.Availability behind a projection that can wait for a position).
// Errors are *capacity.Error values where a code applies (EINVALID for a
// cursor it cannot use, EUNAVAILABLE when it cannot reach minPosition in
// time), anything else is internal.
type Availability interface {
	// Availability answers one page of q once the read model reflects at
	// least stream sequence minPosition (0: at once), waiting no longer
	// than ctx allows.
	Availability(ctx context.Context, q views.AvailabilityQuery, minPosition views.MinPositions) (views.AvailabilityPage, error)
}

// UI is the planner UI (web/ui, which imports web, never the reverse). Its
// pages are routed on the API's own router, so they share its middleware
// and their metrics carry their own route patterns.
type UI interface {
	// Routes adds the UI's pages, / and everything under /ui, to r.
	Routes(r chi.Router)
	// BoardStream is the handler of GET /v1/board/stream, the board's live
	// feed (server-sent events; refusals are problems).
	BoardStream() http.HandlerFunc
}

// Config holds what the HTTP API needs. Pools and History are required;
// the rest have defaults.
type Config struct {
	// Pools is the write side (*pools.Service).
	Pools Pools
	// History reads a pool's events (streams.PoolEvents).
	History History
	// Availability is the read model; nil answers 503 unavailable.
	Availability Availability
	// Reservations finds reservations by id across pools (a read model);
	// nil answers 503 unavailable.
	Reservations ReservationLookup
	// Ready reports whether the service can take writes (nil: ready);
	// GET /readyz answers 503 while it returns an error.
	Ready func() error
	// ReadyDetail, when set, adds the read models' progress (position, lag)
	// to GET /readyz as "read_models".
	ReadyDetail func(ctx context.Context) any
	// Logger receives one line per request and internal errors.
	Logger zerolog.Logger
	// Tracing says spans are exported (an OpenTelemetry SDK is installed):
	// every request gets a server span. Without it only a request that
	// carries a traceparent does, to pass its trace on to the commit.
	Tracing bool
	// Regions reports the regions (GET /v1/regions); nil answers 503.
	Regions Regions
	// Registry receives the HTTP metrics and is served, with whatever
	// else is registered on it (the write side's pools.Metrics, the read
	// models'), at /metrics. Default: a new registry.
	Registry *prometheus.Registry
	// Now is the clock used to show reservation status. Default time.Now.
	Now func() time.Time
	// MaxBodyBytes bounds request bodies. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Access decides who may call which route (NewAccess); nil leaves
	// every route open.
	Access *Access
	// UI, when set, is the planner UI (*ui.UI): its pages at / and /ui/...
	// and the board's live feed GET /v1/board/stream, which answers 503
	// without it.
	UI UI
}

// DefaultMaxBodyBytes is the default bound on request bodies.
const DefaultMaxBodyBytes = 64 << 10

func (c Config) withDefaults() Config {
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Ready == nil {
		c.Ready = func() error { return nil }
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return c
}

// NewServer returns the HTTP API as one handler. It registers the HTTP
// metrics on cfg.Registry; calling it twice with the same registry reuses
// the collectors registered first.
func NewServer(cfg Config) http.Handler {
	return routes(cfg.withDefaults())
}
