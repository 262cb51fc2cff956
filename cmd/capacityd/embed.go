package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/groupsync"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// embeddedNATS is the nats-server running in this process, and the lock
// that keeps any other process off its store directory.
type embeddedNATS struct {
	*server.Server
	lock *os.File
	// syncs makes appends durable under --sync always (nil otherwise): one
	// fsync of the stream's files shared by every append waiting for one.
	syncs *groupsync.Set
}

// Stop shuts the server down, waits for it, and then releases the data
// directory.
func (e *embeddedNATS) Stop() {
	if e.syncs != nil {
		e.syncs.Stop()
	}
	e.Shutdown()
	e.WaitForShutdown()
	if e.lock != nil {
		e.lock.Close()
	}
}

// startEmbedded starts the embedded nats-server with JetStream on disk under
// cfg.Data, listening for NATS clients on cfg.NATSListen. It refuses a data
// directory that another process is using.
func startEmbedded(cfg Config, log zerolog.Logger) (_ *embeddedNATS, err error) {
	dir, err := usableDir(cfg.Data)
	if err != nil {
		return nil, err
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && lock != nil {
			lock.Close()
		}
	}()
	host, portStr, err := net.SplitHostPort(cfg.NATSListen)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: %v", cfg.NATSListen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: bad port", cfg.NATSListen)
	}
	if port == 0 {
		port = -1 // nats-server's "any free port"
	} else if err := portFree(cfg.NATSListen); err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "capacityd-" + cfg.Region,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		MaxPayload: 8 << 20, // pool snapshots can be large
		// --sync strict: the server fsyncs after each message, one at a
		// time on the stream's goroutine. --sync always: the server writes
		// each message in place before its ack and the appender waits for
		// a groupsync round (one fsync shared by every append waiting).
		SyncAlways:   cfg.Sync == SyncStrict,
		SyncInterval: cfg.SyncInterval,
		// Each region is its own JetStream domain: losing one never costs
		// another its quorum, and other regions reach this one's streams
		// through $JS.<region>.API over leaf nodes.
		JetStreamDomain: cfg.Region,
	}
	if err := leafOptions(cfg, opts); err != nil {
		return nil, err
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	s.SetLoggerV2(natsLogger{log.With().Str("component", "nats").Logger()}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not become ready on %s (port in use? see log)", cfg.NATSListen)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS started without JetStream (data dir %s)", dir)
	}
	e := &embeddedNATS{Server: s, lock: lock}
	if cfg.Sync == SyncAlways {
		e.syncs = groupsync.NewSet(s.JetStreamConfig().StoreDir, server.DEFAULT_GLOBAL_ACCOUNT)
	}
	return e, nil
}

// leafOptions sets the leaf-node listener and remotes of the embedded
// server. Every remote link denies, both ways, the subjects that must stay
// in their domain (events and snapshot puts): one denial on a link covers
// both directions, so the listener needs none.
func leafOptions(cfg Config, opts *server.Options) error {
	if cfg.LeafnodeListen != "" {
		host, portStr, err := net.SplitHostPort(cfg.LeafnodeListen)
		if err != nil {
			return fmt.Errorf("--leafnode-listen %q: %v", cfg.LeafnodeListen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return fmt.Errorf("--leafnode-listen %q: bad port", cfg.LeafnodeListen)
		}
		if port == 0 {
			port = -1
		}
		opts.LeafNode.Host, opts.LeafNode.Port = host, port
		// Other regions reach this one at the addresses they are given
		// (--leafnode-remote), never at one this server advertises: a link
		// run through a proxy or a tunnel must not be bypassed on
		// reconnect (a partition of that link stays one).
		opts.LeafNode.NoAdvertise = true
	}
	deny := append(append(streams.LinkDeny(), kv.LinkDeny(kv.DefaultBucket)...), kv.LinkDeny(kv.TermsBucket)...)
	for _, r := range cfg.LeafnodeRemotes {
		u, err := url.Parse(r)
		if err != nil {
			return fmt.Errorf("--leafnode-remote %q: %v", r, err)
		}
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, &server.RemoteLeafOpts{
			URLs: []*url.URL{u}, DenyImports: deny, DenyExports: deny,
		})
	}
	if len(cfg.LeafnodeRemotes) > 0 {
		// A region that comes back is linked again within a quarter second.
		opts.LeafNode.ReconnectInterval = 250 * time.Millisecond
	}
	return nil
}

// portFree fails at once, and says what to do, when addr cannot be bound:
// nats-server itself would only log the error and leave us waiting for a
// server that never becomes ready.
func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--nats-listen %s: cannot listen: %w (another NATS server or capacityd uses it? pick a free address with --nats-listen, or use that server with --nats-url)", addr, err)
	}
	return ln.Close()
}

// usableDir creates dir if needed and proves it is writable, so a bad --data
// fails at start with a clear message instead of at the first write.
func usableDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("--data %q: %v", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("--data %q is not usable: %v", dir, err)
	}
	probe, err := os.CreateTemp(abs, ".probe-*")
	if err != nil {
		return "", fmt.Errorf("--data %q is not writable: %v", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return abs, nil
}

// natsLogger sends nats-server's log lines to zerolog.
type natsLogger struct{ log zerolog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
