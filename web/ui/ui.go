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
	"github.com/capacityd/capacityd/web"
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

// Verdicts is capacityd verify's last verdict on each region this one
// knows (cmd/capacityd's app, from kv.VerifyBucket).
type Verdicts interface {
	// Verdicts returns the verdicts published, none if verify never ran.
	Verdicts(ctx context.Context) []capacity.VerifyVerdict
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
	// Verdicts, when set, shows verify's last verdict per region on the
	// board.
	Verdicts Verdicts
	// Logger receives template failures; a request's own errors go to its
	// logger (set by web's middleware).
	Logger zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Heartbeat is how often an idle board stream sends a comment so
	// proxies and browsers keep it open. Default 15s.
	Heartbeat time.Duration
	// Access, when it holds tokens, makes every page ask for a planner's
	// token once (a login page at /ui/login keeps it in a cookie). Nil or
	// open: no login.
	Access *web.Access
	// TrustedOrigins are extra origins (scheme://host[:port]) whose forms
	// may POST here, for a UI served behind a proxy under another name.
	TrustedOrigins []string
}

// DefaultHeartbeat is the default interval of board stream heartbeats.
const DefaultHeartbeat = 15 * time.Second

// UI is the planner UI, ready to be routed by web (it implements web.UI):
// its pages under / and /ui/ on the API's own router, and the board's live
// feed that web routes at /v1/board/stream.
type UI struct {
	cfg    Config
	engine *engine
}

// New parses every template and returns the UI. It fails, rather than
// panics, when a template does not parse or a dependency is missing.
func New(cfg Config) (*UI, error) {
	if cfg.Pools == nil || cfg.History == nil {
		return nil, errors.New("ui: Pools and History are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	e, err := newEngine(cfg.Now, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return &UI{cfg: cfg, engine: e}, nil
}

// Routes adds every page and action of the UI to r, the API's router: the
// board at /, the rest under /ui, where an unknown page or method is an
// HTML error page rather than a problem.
func (u *UI) Routes(r chi.Router) {
	e, cfg := u.engine, u.cfg
	planner := requirePlanner(e, cfg.Access)
	r.With(planner).Get("/", handleBoard(e, cfg.Board, cfg.Verdicts))
	r.Route("/ui", func(r chi.Router) {
		r.NotFound(handleNotFound(e))
		r.MethodNotAllowed(handleMethodNotAllowed(e))
		r.Handle("/static/*", e.static())
		r.Get("/login", handleLoginForm(e))
		r.With(sameOrigin(e, cfg.TrustedOrigins)).Post("/login", handleLogin(e, cfg.Access))
		r.With(sameOrigin(e, cfg.TrustedOrigins)).Post("/logout", handleLogout())

		r.Group(func(r chi.Router) {
			r.Use(planner)
			r.Get("/", redirectTo("/"))
			r.Get("/board", redirectTo("/"))
			r.Get("/board/grid", handleBoardGrid(e, cfg.Board))
			r.Get("/pools", handlePoolList(e, cfg.Availability))
			r.Get("/pools/{pool}", handlePool(e, cfg.Pools, cfg.History))
			r.Get("/week", handleWeekForm(e))
		})
		r.Group(func(r chi.Router) {
			r.Use(sameOrigin(e, cfg.TrustedOrigins), planner)
			r.Post("/pools/{pool}/capacity", handlePoolCapacity(e, cfg.Pools, cfg.History))
			r.Post("/pools/{pool}/status", handlePoolStatus(e, cfg.Pools, cfg.History))
			r.Post("/week", handleWeekCreate(e, cfg.Pools))
		})
	})
}

// BoardStream returns the handler of GET /v1/board/stream, the board's
// changes as server-sent events.
func (u *UI) BoardStream() http.HandlerFunc {
	return handleBoardStream(u.cfg.Board, u.cfg.Now, u.cfg.Heartbeat)
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
