// Package natsapi is the HTTP API's commands and queries as a NATS micro
// service named "capacity" (nats.go's micro package), so a booking API on
// the same NATS can hold, confirm and release without HTTP, and `nats micro
// ls|info|stats` find it. It is an interface like web: it reaches storage
// only through the pools and views services, never JetStream, and speaks
// web's bodies and problems (web.DecodeHold, web.ProblemOf, ...), so a
// request means the same on both and a refusal has the same problem type.
//
// Subjects are capacityd.<region>.<operation>[.<pool>[.<reservation>]],
// mirroring the HTTP paths (see Subject). They are not under
// capacity.<region>.>: that is the event stream's subject space, where a
// request would be stored as an event instead of answered. Permissions are
// NATS's own: an account or user allowed to publish capacityd.*.hold.>
// may hold and nothing else (README, "NATS service").
//
// A reply is the HTTP answer's JSON body. A refusal is a micro error:
// header Nats-Service-Error-Code is the HTTP status, Nats-Service-Error
// the problem code (e.g. insufficient-capacity), and the body the
// problem+json document.
//
// micro calls an endpoint's handler on the subscription's one goroutine; a
// hold waits for its group commit, so handling requests one by one would
// leave each pool's group commit with one command. The service hands each
// request to a goroutine of its own (at most MaxInFlight at once, then the
// subscription waits), answers it from there, and keeps its own counts,
// shown as each endpoint's stats data; micro's own processing times only
// measure the hand-over.
//
// Client is the other side, used by capacityd bench and meant for
// forwarding writes between regions.
package natsapi
