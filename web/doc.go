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
// Bad input never changes state: requests are decoded strictly (unknown
// fields, trailing data, wrong types, oversized bodies are refused) and
// validated before any command is sent to a pool.
package web
