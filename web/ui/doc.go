// Package ui is the planner's web UI, served by capacityd beside its API:
// a live board of utilisation, a page per pool, and the forms that reshape
// capacity.
//
// Routes (added to the API's router by UI.Routes, except the stream, which
// web routes to UI.BoardStream; web.Config.UI wires them):
//
//	GET  /                           the board: regions x days x slots, filtered by region, kind, dates
//	GET  /ui/board/grid              the board's grid alone (board.js refetches it when a new row appears)
//	GET  /ui/pools                   pools from the availability read model; ?id= jumps to a pool
//	GET  /ui/pools/{pool}            figures, utilisation chart, reservations, audit trail, forms
//	POST /ui/pools/{pool}/capacity   change capacity, conditional on the form's version
//	POST /ui/pools/{pool}/status     close or reopen, conditional on the form's version
//	GET  /ui/week, POST /ui/week     create a week of pools from a template, idempotently
//	GET  /ui/login, POST /ui/login   ask for a planner's token once, keep it in a cookie (with tokens)
//	POST /ui/logout                  forget it
//	GET  /ui/static/...              embedded CSS and JavaScript
//	GET  /v1/board/stream            the board's changes as server-sent events
//
// Handlers have the web package's shape: maker functions taking their
// dependencies (the page engine, Pools, History, a read model) and
// returning an http.HandlerFunc. Pages answer failures with an HTML error
// page whose status comes from web.StatusOf, the API's own code-to-status
// mapping; the stream, an API route, answers them as problem+json through
// web.Error. The package imports web, capacity, capacity/views and the
// write side's Result (capacity/pools); web never imports it, and it
// reaches storage only through the Pools and History interfaces.
//
// Pages are server-rendered html/template views (templates/views), each
// parsed once at startup together with the common layout and partials
// (templates/common); New fails if one does not parse or a declared view is
// missing. A page renders into a buffer before anything is written, so a
// template error is a clean 500. Each page has a typed struct embedding
// BasePage; there is no map[string]any data.
//
// Everything works without JavaScript: filters are GET forms, actions are
// POST forms answered with a redirect (303) to the page showing the
// outcome. static/board.js adds live updates: it opens an EventSource on
// /v1/board/stream with the board's filter and rewrites cells in place.
// The stream sends a snapshot first (id: the board's position) and then
// one event per changed cell (id: the stream sequence of the change); a
// browser reconnecting with a Last-Event-ID equal to the position gets no
// snapshot, any other gets a fresh one, so nothing is missed across
// reconnects or server restarts.
//
// Changes are conditional: every form carries the pool version it was
// rendered at as a hidden field, sent as the command's IfVersion (the
// API's If-Match). The loser of a race gets 412 and the pool page again
// with the current figures and the new version in the form, so a second
// submit is a deliberate retry.
//
// State-changing requests must come from our own pages: the Origin header
// (or, without it, the Referer) must name this host; see sameOrigin. That
// is enough against cross-site form posts for an internal tool. With
// tokens configured (web.Access), every page needs a planner's token: a
// browser without one is sent to /ui/login, which keeps the token in an
// HttpOnly, SameSite=Strict cookie (login.go).
package ui
