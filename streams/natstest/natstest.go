// Package natstest runs embedded NATS servers with JetStream for tests, in the manner of nats-server's own
// RunBasicJetStreamServer and checkFor helpers. Import it only from _test.go files.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// started remembers the options each running server was started with, so Restart can reuse them.
var started sync.Map // *server.Server -> server.Options

// RunServer starts a JetStream server on a random port with its store in t.TempDir() (unless opts set
// StoreDir), waits until it accepts connections and shuts it down when the test ends.
func RunServer(t testing.TB, opts ...func(*server.Options)) *server.Server {
	t.Helper()
	o := server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		HTTPPort:  -1,
		JetStream: true,
		NoSigs:    true,
		NoLog:     true,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	return start(t, o)
}

// Restart shuts s down, waits for it to stop and starts a new server with the same options, store
// directory and port, as a process restart would.
func Restart(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	v, ok := started.Load(s)
	if !ok {
		t.Fatalf("natstest: Restart of a server not started by RunServer")
	}
	o := v.(server.Options)
	if addr, ok := s.Addr().(*net.TCPAddr); ok {
		o.Port = addr.Port
	}
	s.Shutdown()
	s.WaitForShutdown()
	started.Delete(s)
	return start(t, o)
}

// start starts a server with a copy of o and registers its shutdown with t.
func start(t testing.TB, o server.Options) *server.Server {
	t.Helper()
	opts := o // the server keeps and mutates its *Options
	s, err := server.NewServer(&opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("natstest: server not ready for connections")
	}
	started.Store(s, o)
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
		started.Delete(s)
	})
	return s
}

// Connect opens an in-process connection to s and a JetStream context on it; both close when the test ends.
func Connect(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(s), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// CheckFor calls f every interval until it returns nil, and fails the test with f's last error if that
// does not happen within total.
func CheckFor(t testing.TB, total, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: condition not met after %v: %v", total, err)
		}
		time.Sleep(every)
	}
}

// SyncAlways is a RunServer option that makes the server fsync every write before acknowledging it.
func SyncAlways(o *server.Options) { o.SyncAlways = true }

// Region is a RunServer option for one region of a multi-region test: JetStream domain and server name
// region, and a leaf-node listener on a random loopback port for other regions to connect to.
func Region(region string) func(*server.Options) {
	return func(o *server.Options) {
		o.ServerName = "region-" + region
		o.JetStreamDomain = region
		o.LeafNode.Host = "127.0.0.1"
		o.LeafNode.Port = -1
	}
}

// LeafTo is a RunServer option connecting the server over a leaf node to hub's leaf-node listener,
// with deny as both DenyImports and DenyExports of the link.
func LeafTo(hub *server.Server, deny ...string) func(*server.Options) {
	return func(o *server.Options) {
		u := &url.URL{Scheme: "nats-leaf", Host: LeafAddr(hub)}
		o.LeafNode.Remotes = append(o.LeafNode.Remotes, &server.RemoteLeafOpts{
			URLs: []*url.URL{u}, DenyImports: deny, DenyExports: deny,
		})
		o.LeafNode.ReconnectInterval = 100 * time.Millisecond
	}
}

// WaitLeaf waits until s has at least n leaf-node connections.
func WaitLeaf(t testing.TB, s *server.Server, n int) {
	t.Helper()
	CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := s.NumLeafNodes(); got < n {
			return fmt.Errorf("%s has %d leaf connections, want %d", s.Name(), got, n)
		}
		return nil
	})
}

// LeafAddr returns the host:port of s's leaf-node listener.
func LeafAddr(s *server.Server) string {
	v, err := s.Varz(nil)
	if err != nil || v.LeafNode.Port == 0 {
		return ""
	}
	return net.JoinHostPort(v.LeafNode.Host, strconv.Itoa(v.LeafNode.Port))
}
