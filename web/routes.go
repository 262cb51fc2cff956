package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes is the whole API on one screen.
func routes(cfg Config) *chi.Mux {
	r := chi.NewRouter()
	r.Use(withRequestID(cfg.Logger), observe(newMetrics(cfg.Registry)), recoverPanics, limitBody(cfg.MaxBodyBytes))
	r.NotFound(handleNotFound())
	r.MethodNotAllowed(handleMethodNotAllowed(r))

	r.Get("/healthz", handleHealthz())
	r.Get("/readyz", handleReadyz(cfg.Ready, cfg.ReadyDetail))
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	r.Get("/openapi.json", handleOpenAPI())

	r.Put("/v1/pools/{pool}", handlePutPool(cfg.Pools))
	r.Get("/v1/pools/{pool}", handleGetPool(cfg.Pools))
	r.Patch("/v1/pools/{pool}", handlePatchPool(cfg.Pools))
	r.Post("/v1/pools/{pool}/holds", handleHold(cfg.Pools, cfg.Now))
	r.Post("/v1/pools/{pool}/reservations/{id}/confirm", handleConfirm(cfg.Pools, cfg.Now))
	r.Post("/v1/pools/{pool}/reservations/{id}/release", handleRelease(cfg.Pools, cfg.Now))
	r.Post("/v1/pools/{pool}/reservations/{id}/extend", handleExtend(cfg.Pools, cfg.Now))
	r.Get("/v1/pools/{pool}/reservations/{id}", handleGetReservation(cfg.Pools, cfg.Now))
	r.Get("/v1/pools/{pool}/events", handleEvents(cfg.History))
	r.Get("/v1/availability", handleAvailability(cfg.Availability))
	r.Get("/v1/reservations/{id}", handleLookupReservation(cfg.Reservations, cfg.Now))
	r.Post("/v1/bookings", handleBook(cfg.Pools, cfg.Now))
	r.Get("/v1/bookings/{id}", handleGetBooking(cfg.Pools, cfg.Reservations, cfg.Now))
	r.Post("/v1/bookings/{id}/confirm", handleConfirmBooking(cfg.Pools, cfg.Reservations, cfg.Now))
	r.Post("/v1/bookings/{id}/release", handleReleaseBooking(cfg.Pools, cfg.Reservations, cfg.Now))
	r.Post("/v1/bookings/{id}/extend", handleExtendBooking(cfg.Pools, cfg.Reservations, cfg.Now))
	r.Get("/v1/regions", handleRegions(cfg.Regions))
	r.Get("/v1/board/stream", handleBoardStream(cfg.UI))
	if cfg.UI != nil {
		cfg.UI.Routes(r) // the planner's pages: / and /ui/... (web/ui)
	}
	return r
}
