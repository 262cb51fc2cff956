// Package web is capacityd's HTTP API: the booking routes customers call,
// the planner routes that reshape pools, health and readiness, Prometheus
// metrics and the OpenAPI document (openapi.json, embedded and served at
// /openapi.json).
//
// It adapts HTTP to the domain and nothing else: handlers decode a request,
// call the write side (Pools, implemented by *pools.Service) or a read model
// (Availability, History), and encode the answer. Every failure goes through
// Error, the one place where a capacity error code becomes an HTTP status
// and an RFC 9457 problem type; errors without a code are internal, logged,
// and answered with a bare 500 whose detail never leaks their text.
//
// Layers: web imports capacity, capacity/pools (its Result) and
// capacity/views (the read models' query and answer types), and reaches
// them through the Pools, History, Availability, ReservationLookup and UI
// interfaces; it never imports streams, kv, web/ui (which imports web) or
// cmd. The JSON shapes here (poolJSON, reservationJSON, eventJSON) are the
// public contract of docs/API.md and deliberately not capacity.PoolView:
// the domain may change without the contract moving. e2e and the load
// generator keep their own copies of these shapes on purpose: they are
// clients written against the contract, and a change that breaks it must
// break them.
//
// Access (access.go): with tokens (NewAccess over LoadTokens), each route
// is registered in routes.go with the least role that may call it
// (customer < planner < admin); refusals are 401 unauthorized and 403
// forbidden problems, and a customer token's writes pass a token bucket
// (golang.org/x/time/rate) or get 429 rate-limited. Without tokens every
// route is open. The planner UI authorises its pages with Access.Authorize.
//
// codec.go exports the request decoders, answer bodies and problem mapping
// to the other interfaces that speak this API (web/natsapi, the NATS micro
// service), so a body means the same and a refusal has the same type there.
// trace.go continues a request's W3C trace in a server span whose context
// the write side carries into the stored commit.
//
// Bad input never changes state: requests are decoded strictly (unknown
// fields, trailing data, wrong types, oversized bodies are refused) and
// validated before any command is sent to a pool.
package web
