// Package pgpeer is the PostgreSQL peer of `capacityd bench --postgres`:
// a small HTTP service with capacityd's hold route and JSON shapes, built
// the way a service on a plain SQL database usually is, so the bench can
// drive the same load at both in the same run and report the ratio.
//
// # What it serves
//
//	PUT  /v1/pools/{pool}        define a pool: 201 new, 200 identical repeat, 409 conflict
//	GET  /v1/pools/{pool}        the pool's capacity, held and confirmed (the bench's check)
//	POST /v1/pools/{pool}/holds  hold units: 201 new, 200 identical repeat,
//	                             409 insufficient-capacity, 409 conflict, 409 pool-closed, 404
//
// Bodies are decoded by capacityd's own decoders (web.DecodeHold,
// web.DecodeDefine) and refusals answered by its own problem mapping
// (web.Error), so a request means the same to both and a refusal carries
// the same problem type. Only the storage differs.
//
// # A hold is one transaction
//
//	BEGIN
//	SELECT pool ... LEFT JOIN its reservation with that id ... FOR UPDATE OF the pool row
//	decide in Go (decideHold): repeat, conflict, closed, insufficient or new
//	INSERT the reservation; UPDATE the pool's held and version   (one pipelined round trip)
//	COMMIT
//
// The row lock serializes the holds of one pool; holds of different pools
// run in parallel and PostgreSQL group-commits their WAL flushes. The
// reservation's primary key (pool, id) makes a repeated id a repeat, as in
// capacityd, where reservation ids are scoped by pool. Durability is the
// server's: the peer sets neither synchronous_commit nor anything else, and
// reports what the server says for fsync and synchronous_commit so a run
// against a server with either off is not mistaken for a durable one.
//
// # What it leaves out
//
// Holds never lapse here (no TTL sweep, no lapsed-hold accounting): the
// bench's holds live an hour, longer than any run, so capacityd never
// frees a unit during a run either. There is no event history, no read
// model, no confirm, release or booking: the peer is as small as the
// comparison allows, which favours it.
//
// # Its tables
//
// Start creates a scratch schema with a random name in the database of the
// URL it is given (the role needs CREATE there), points every connection's
// search_path at it, and Close drops it with everything in it.
package pgpeer
