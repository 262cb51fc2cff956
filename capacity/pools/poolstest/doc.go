// Package poolstest holds small helpers shared by the tests of the write
// side and of what is built on it: a fake clock and a log buffer safe for
// concurrent writes. It imports nothing but the standard library; the real
// write side over NATS for tests is e2e/stacktest.
//
// It is imported only by tests.
package poolstest
