// Package stacktest runs the real write side in-process for the tests of
// the packages built on it (pools, projections, web, the planner UI): the
// JetStream event store (streams), the snapshot bucket (kv) and a
// pools.Service over an embedded NATS server (streams/natstest).
//
// It wires storage and the write side together, as cmd/capacityd does, so
// it lives beside the end-to-end tests, where every arrow may point: no
// package of capacity/, streams/, kv/ or web/ may import it except from a
// _test.go file.
package stacktest

import (
	"context"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Stack is the real write side over a NATS server: event store, snapshots
// and the pools service.
type Stack struct {
	JS        jetstream.JetStream
	Store     *streams.Store
	Events    *streams.PoolEvents
	Snapshots *kv.PoolSnapshots
	Service   *pools.Service // nil after Open until Start
}

// NewStack connects to s (natstest.Connect), opens the region's stream and
// the snapshot bucket and starts a pools.Service with opts; it is closed at
// cleanup.
func NewStack(t testing.TB, s *server.Server, region string, opts pools.Options) *Stack {
	t.Helper()
	st := Open(t, s, region)
	st.Start(t, opts)
	return st
}

// Open is NewStack without the service: it connects to s and opens the
// region's stream and the snapshot bucket. Call Start for a service.
func Open(t testing.TB, s *server.Server, region string) *Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, s)
	store, err := streams.New(ctx, js, region)
	if err != nil {
		t.Fatalf("streams.New: %v", err)
	}
	snaps, err := kv.New(ctx, js, kv.DefaultBucket)
	if err != nil {
		t.Fatalf("kv.New: %v", err)
	}
	return &Stack{JS: js, Store: store, Events: streams.NewPoolEvents(store), Snapshots: kv.NewPoolSnapshots(snaps, region)}
}

// Start starts a new pools.Service with opts over the stack's events and
// snapshots, makes it st.Service and returns it; it is closed at cleanup.
func (st *Stack) Start(t testing.TB, opts pools.Options) *pools.Service {
	t.Helper()
	st.Service = pools.New(st.Events, st.Snapshots, opts)
	t.Cleanup(st.Service.Close)
	return st.Service
}
