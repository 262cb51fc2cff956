package ui

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
)

// Pools is the write side as the planner uses it; *pools.Service
// implements it. Refusals are *capacity.Error values.
type Pools interface {
	// Execute carries out cmd on the pool once its events are stored.
	Execute(ctx context.Context, pool string, cmd capacity.Command) (pools.Result, error)
	// Pool returns the pool's current view, strongly consistent;
	// ENOTFOUND when the pool has never been defined.
	Pool(ctx context.Context, pool string) (capacity.PoolView, error)
}

// History reads a pool's own history, the audit trail of the pool page;
// streams.PoolEvents implements it.
type History interface {
	// Read yields the pool's events after afterSeq, in order.
	Read(ctx context.Context, pool string, afterSeq uint64) iter.Seq2[capacity.Recorded, error]
}

// Board is the planner's read model (*views.Board): utilisation per
// region, kind and slot, with a change feed.
type Board interface {
	// Cells returns the cells of a region on a day (views.DayLayout), of
	// one kind or every kind if kind is "", with the position they
	// reflect. Empty region or day match every one.
	Cells(region, kind, day string) ([]views.Cell, uint64)
	// Subscribe returns a channel of changes and a function that ends the
	// subscription; the channel is closed when the subscriber falls a full
	// buffer behind, or when ctx ends.
	Subscribe(ctx context.Context, buffer int) (<-chan views.BoardChange, func())
}

// Availability is the read model that lists pools (*views.Availability).
type Availability interface {
	// Query returns a page of the pools q selects, figures at now.
	Query(q views.AvailabilityQuery, now time.Time) (views.AvailabilityPage, error)
}

// Config is what the planner UI needs. Pools and History are required;
// a nil Board or Availability shows a page saying the read model is not
// running.
type Config struct {
	// Pools is the write side (*pools.Service).
	Pools Pools
	// History reads a pool's events (streams.PoolEvents).
	History History
	// Board is the board read model (*views.Board).
	Board Board
	// Availability lists pools (*views.Availability).
	Availability Availability
	// Logger receives template and internal errors.
	Logger zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Heartbeat is how often an idle board stream sends a comment so
	// proxies and browsers keep it open. Default 15s.
	Heartbeat time.Duration
	// TrustedOrigins are extra origins (scheme://host[:port]) whose forms
	// may POST here, for a UI served behind a proxy under another name.
	TrustedOrigins []string
}

// DefaultHeartbeat is the default interval of board stream heartbeats.
const DefaultHeartbeat = 15 * time.Second

// Handler is the planner UI: the board at /, pool pages and forms under
// /ui/, static assets under /ui/static/, and the board's live feed at
// /v1/board/stream.
type Handler struct {
	cfg    Config
	engine *engine
	mux    *chi.Mux
}

// New parses every template and returns the UI. It fails, rather than
// panics, when a template does not parse or a dependency is missing.
func New(cfg Config) (*Handler, error) {
	if cfg.Pools == nil || cfg.History == nil {
		return nil, errors.New("ui: Pools and History are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	e, err := newEngine(cfg.Logger)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, engine: e}
	h.mux = h.routes()
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// routes lists every page and action of the UI.
func (h *Handler) routes() *chi.Mux {
	r := chi.NewRouter()
	r.NotFound(h.handleNotFound())
	r.MethodNotAllowed(h.handleMethodNotAllowed())
	r.Handle("/ui/static/*", h.engine.static())

	r.Get("/v1/board/stream", h.handleBoardStream())

	r.Get("/", h.handleBoard())
	r.Get("/ui", redirectTo("/"))
	r.Get("/ui/board", redirectTo("/"))
	r.Get("/ui/board/grid", h.handleBoardGrid())
	r.Get("/ui/pools", h.handlePoolList())
	r.Get("/ui/pools/{pool}", h.handlePool())
	r.Get("/ui/week", h.handleWeekForm())

	r.Group(func(r chi.Router) {
		r.Use(sameOrigin(h, h.cfg.TrustedOrigins))
		r.Post("/ui/pools/{pool}/capacity", h.handlePoolCapacity())
		r.Post("/ui/pools/{pool}/status", h.handlePoolStatus())
		r.Post("/ui/week", h.handleWeekCreate())
	})
	return r
}

// redirectTo answers GET with a 303 to path, keeping the query.
func redirectTo(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		target := path
		if q := r.URL.RawQuery; q != "" {
			target += "?" + q
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
	}
}
