// Package e2e tests the real capacityd binary, alone or several of them, on
// an embedded or external NATS (one server or a three-node cluster), in the
// manner of etcd's robustness tests and Jepsen: traffic from many clients, one
// fault family per history, every operation recorded with call and return
// times from one monotonic clock, unknown outcomes resolved against the
// event stream (the ground truth), then a per-pool linearizability check
// with porcupine plus the lost-acknowledgement and overbooking counts.
//
// It is a client of the public contract (docs/API.md): history.go keeps
// its own copy of the pool and reservation JSON on purpose, so a change in
// web that breaks the contract fails here. e2e/stacktest is the in-process
// real stack for the tests of packages above storage.
//
// The non-test files hold what a later verifier or soak command can reuse:
// the history recorder and HTTP client (history.go), the traffic generator
// (traffic.go), the per-pool model (model.go) and the checker with its
// failure report (check.go). The harness that builds and runs processes is
// in harness_test.go.
//
// Run: go test -race ./e2e/ (a few minutes); a longer soak with
// go test ./e2e/ -run Fault -soak=10m (or CAPACITY_SOAK=10m). Failure
// reports go to a directory printed by the test, under $CAPACITY_ARTIFACTS
// when set.
package e2e
