// Package poolstest holds helpers shared by the tests of the write side and
// of what is built on it: a fake clock, a log buffer safe for concurrent
// writes, and the real write side (event store, snapshots and pools service)
// over an embedded NATS server.
//
// It is imported only by tests.
package poolstest
