package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes is the whole API on one screen, each route with the least role
// that may call it (docs/API.md, "Access"; without tokens all are open).
func routes(cfg Config) *chi.Mux {
	r := chi.NewRouter()
	r.Use(middleware.GetHead) // HEAD on every GET route: the same headers, no body
	r.Use(withRequestID(cfg.Logger), observe(newMetrics(cfg.Registry), cfg.Logger), traced(cfg.Tracing), recoverPanics, limitBody(cfg.MaxBodyBytes))
	r.NotFound(handleNotFound())
	r.MethodNotAllowed(handleMethodNotAllowed(r))

	customer, planner, admin := cfg.Access.require(RoleCustomer), cfg.Access.require(RolePlanner), cfg.Access.require(RoleAdmin)

	// Open to all, tokens or not.
	r.Get("/healthz", handleHealthz())
	r.Get("/readyz", handleReadyz(cfg.Ready, cfg.ReadyDetail))
	r.Get("/openapi.json", handleOpenAPI())

	r.With(admin).Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))

	r.With(planner).Put("/v1/pools/{pool}", handlePutPool(cfg.Pools))
	r.With(customer).Get("/v1/pools/{pool}", handleGetPool(cfg.Pools))
	r.With(planner).Patch("/v1/pools/{pool}", handlePatchPool(cfg.Pools))
	r.With(customer).Post("/v1/pools/{pool}/holds", handleHold(cfg.Pools, cfg.Now))
	r.With(customer).Post("/v1/pools/{pool}/reservations/{id}/confirm", handleConfirm(cfg.Pools, cfg.Now))
	r.With(customer).Post("/v1/pools/{pool}/reservations/{id}/release", handleRelease(cfg.Pools, cfg.Now))
	r.With(customer).Post("/v1/pools/{pool}/reservations/{id}/extend", handleExtend(cfg.Pools, cfg.Now))
	r.With(customer).Get("/v1/pools/{pool}/reservations/{id}", handleGetReservation(cfg.Pools, cfg.Now))
	r.With(planner).Get("/v1/pools/{pool}/events", handleEvents(cfg.History))
	r.With(customer).Get("/v1/availability", handleAvailability(cfg.Availability))
	r.With(customer).Get("/v1/reservations/{id}", handleLookupReservation(cfg.Reservations, cfg.Now))
	r.With(customer).Post("/v1/bookings", handleBook(cfg.Pools, cfg.Now))
	r.With(customer).Get("/v1/bookings/{id}", handleGetBooking(cfg.Pools, cfg.Reservations, cfg.Now))
	r.With(customer).Post("/v1/bookings/{id}/confirm", handleConfirmBooking(cfg.Pools, cfg.Reservations, cfg.Now))
	r.With(customer).Post("/v1/bookings/{id}/release", handleReleaseBooking(cfg.Pools, cfg.Reservations, cfg.Now))
	r.With(customer).Post("/v1/bookings/{id}/extend", handleExtendBooking(cfg.Pools, cfg.Reservations, cfg.Now))
	r.With(planner).Get("/v1/board/stream", handleBoardStream(cfg.UI))
	r.With(customer).Get("/v1/regions", handleRegions(cfg.Regions, cfg.Now))
	r.With(admin).Post("/v1/admin/regions/{region}/promote", handlePromote(cfg.Regions))
	if cfg.UI != nil {
		cfg.UI.Routes(r) // the planner's pages: / and /ui/... (web/ui)
	}
	return r
}
