package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/streams"
)

// Durability modes. See the README's "What an ack promises".
const (
	SyncAlways   = "always"   // fsync before every ack, one fsync shared by every append waiting for one (groupsync)
	SyncStrict   = "strict"   // fsync by the server after every message, before anyone (a reader, a mirror) sees it
	SyncInterval = "interval" // fsync every --sync-interval; acks mean "in the OS page cache"
)

// Config is everything `capacityd serve` is told by flags and environment.
type Config struct {
	HTTP          string
	PprofListen   string // --pprof-listen: runtime profiles on their own listener; "" off
	Data          string
	NATSListen    string
	NATSURL       string
	Region        string
	LogFormat     string
	LogLevel      string
	Sync          string
	SyncInterval  time.Duration
	Replicas      int
	SnapshotEvery int
	MaxBatch      int
	PoolBatch     string // auto, on or off: commits of several pools in one atomic batch
	Shutdown      time.Duration
	Instance      string
	// LeafnodeListen is where the embedded NATS accepts other regions'
	// leaf-node connections ("" for none).
	LeafnodeListen string
	// LeafnodeRemotes are other regions' leaf-node URLs to connect to.
	LeafnodeRemotes []string
	// PeerRegions are the other regions whose streams and snapshots are
	// mirrored here.
	PeerRegions []string
	// ForwardTimeout bounds a write forwarded to the region that writes
	// the pool: past it, 503 region-unavailable.
	ForwardTimeout time.Duration
	// WriteLease, when positive, makes a region write only while every peer
	// region answered within it, and a takeover wait it out (lease.go).
	WriteLease time.Duration
	Tokens     string // file of "<role> <token>" lines; empty: open access
	RateLimit  int    // writes per second per customer token; 0: none
	// OTLPEndpoint is $OTEL_EXPORTER_OTLP_ENDPOINT: when set, spans are
	// exported there (no flag: OpenTelemetry's own variables configure it).
	OTLPEndpoint string
	// SweepEvery is how often the service looks for lapsed holds in pools
	// no loaded entity is sweeping (no flag: tests shorten it).
	SweepEvery time.Duration
	// IdleTimeout evicts a pool with no live hold from the write side's
	// memory once it has had no command for this long (no flag: tests
	// shorten it; 0: pools.Options' default, a minute).
	IdleTimeout time.Duration
	// CheckpointEvery and CheckpointInterval: the read models save a
	// checkpoint every N events or T, whichever comes first once
	// something is new, and at shutdown. CheckpointEvery 0: no checkpoints,
	// the read models rebuild from the whole stream at every start.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// ClockFile is the test-only clock offset file ($CAPACITY_CLOCK_FILE,
	// no flag; see clock.go).
	ClockFile string
}

// DefaultConfig returns the documented defaults (docs/API.md, README).
func DefaultConfig() Config {
	return Config{
		HTTP:          "127.0.0.1:8080",
		Data:          "./data",
		NATSListen:    "127.0.0.1:4222",
		Region:        "local",
		LogFormat:     "auto",
		LogLevel:      "info",
		Sync:          SyncAlways,
		SyncInterval:  2 * time.Minute,
		Replicas:      1,
		SnapshotEvery: 1000,
		MaxBatch:      256,
		PoolBatch:     "auto",
		Shutdown:      10 * time.Second,
		SweepEvery:    5 * time.Second,

		ForwardTimeout: 2 * time.Second,

		CheckpointEvery:    100_000,
		CheckpointInterval: time.Minute,
	}
}

// flagEnv names a flag and the environment variable that sets its default.
type flagEnv struct {
	flag, env, usage string
}

// parseConfig reads flags from args with environment fallbacks from getenv:
// a flag given on the command line wins over the environment, which wins
// over the default.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nFlags of serve (each also set by the environment variable shown):\n", usageText)
		fs.PrintDefaults()
	}
	strs := []struct {
		p *string
		flagEnv
	}{
		{&cfg.HTTP, flagEnv{"http", "CAPACITY_HTTP", "HTTP listen address (API + planner UI)"}},
		{&cfg.Data, flagEnv{"data", "CAPACITY_DATA", "embedded NATS JetStream store directory"}},
		{&cfg.NATSListen, flagEnv{"nats-listen", "CAPACITY_NATS_LISTEN", "embedded NATS client listener (for the nats CLI and other instances)"}},
		{&cfg.NATSURL, flagEnv{"nats-url", "CAPACITY_NATS_URL", "use this external NATS instead of embedding one"}},
		{&cfg.Region, flagEnv{"region", "CAPACITY_REGION", "the region this instance serves as home"}},
		{&cfg.LogFormat, flagEnv{"log-format", "CAPACITY_LOG_FORMAT", "log format: auto (console when stderr is a terminal, else json), json or console"}},
		{&cfg.LogLevel, flagEnv{"log-level", "CAPACITY_LOG_LEVEL", "log level: debug, info, warn, error"}},
		{&cfg.Sync, flagEnv{"sync", "CAPACITY_SYNC", "durability of the embedded server: always (fsync before ack, one fsync shared by the appends waiting together), strict (the server fsyncs each message before anyone reads it; slower) or interval (fsync every --sync-interval; faster, loses acked writes on OS crash or power loss)"}},
		{&cfg.PoolBatch, flagEnv{"pool-batch", "CAPACITY_POOL_BATCH", "append the commits of all pools ready at once as one atomic batch: auto (on with --replicas > 1), on or off"}},
		{&cfg.Instance, flagEnv{"instance", "CAPACITY_INSTANCE", "name of this instance among several (its consumer name); default <hostname>-<bound HTTP port>"}},
		{&cfg.LeafnodeListen, flagEnv{"leafnode-listen", "CAPACITY_LEAFNODE_LISTEN", "embedded NATS accepts other regions' leaf-node connections on this host:port"}},
		{&cfg.PprofListen, flagEnv{"pprof-listen", "CAPACITY_PPROF_LISTEN", "serve Go's runtime profiles (/debug/pprof/: CPU, heap, goroutines, execution trace) on this host:port, apart from the API and without its tokens: bind it to loopback; empty: off"}},
		{&cfg.Tokens, flagEnv{"tokens", "CAPACITY_TOKENS", "file of bearer tokens, lines \"<role> <token>\" with role customer, planner or admin; reloaded on SIGHUP; empty: every route open"}},
	}
	for _, s := range strs {
		def := *s.p
		if v := getenv(s.env); v != "" {
			def = v
		}
		fs.StringVar(s.p, s.flag, def, s.usage+" ($"+s.env+")")
	}
	ints := []struct {
		p *int
		flagEnv
	}{
		{&cfg.Replicas, flagEnv{"replicas", "CAPACITY_REPLICAS", "replicas of the event stream and snapshot bucket (3 on an R3 cluster)"}},
		{&cfg.SnapshotEvery, flagEnv{"snapshot-every", "CAPACITY_SNAPSHOT_EVERY", "write a pool snapshot every N events"}},
		{&cfg.MaxBatch, flagEnv{"max-batch", "CAPACITY_MAX_BATCH", "most commands one pool group-commits in one append"}},
		{&cfg.RateLimit, flagEnv{"rate-limit", "CAPACITY_RATE_LIMIT", "at most N write requests per second per customer token (429 beyond); 0: no limit"}},
		{&cfg.CheckpointEvery, flagEnv{"checkpoint-every", "CAPACITY_CHECKPOINT_EVERY", "checkpoint the read models every N events (0: never, rebuild from the stream at start)"}},
	}
	var envErr error
	for _, i := range ints {
		def := *i.p
		if v := getenv(i.env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("$%s: %q is not a number", i.env, v)
			}
			def = n
		}
		fs.IntVar(i.p, i.flag, def, i.usage+" ($"+i.env+")")
	}
	durs := []struct {
		p *time.Duration
		flagEnv
	}{
		{&cfg.SyncInterval, flagEnv{"sync-interval", "CAPACITY_SYNC_INTERVAL", "fsync interval with --sync interval"}},
		{&cfg.Shutdown, flagEnv{"shutdown-timeout", "CAPACITY_SHUTDOWN_TIMEOUT", "how long SIGTERM waits for in-flight requests"}},
		{&cfg.ForwardTimeout, flagEnv{"forward-timeout", "CAPACITY_FORWARD_TIMEOUT", "how long a write forwarded to the region that writes the pool may take before 503 region-unavailable"}},
		{&cfg.WriteLease, flagEnv{"write-lease", "CAPACITY_WRITE_LEASE", "0 (off) or a duration: write only while every peer region answered within it, and make a takeover wait it out, so a region cut off from its peers stops acknowledging writes before another takes its pools over (same value in every region)"}},
		{&cfg.CheckpointInterval, flagEnv{"checkpoint-interval", "CAPACITY_CHECKPOINT_INTERVAL", "checkpoint the read models at least this often while the stream moves"}},
	}
	for _, d := range durs {
		def := *d.p
		if v := getenv(d.env); v != "" {
			n, err := time.ParseDuration(v)
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("$%s: %q is not a duration", d.env, v)
			}
			def = n
		}
		fs.DurationVar(d.p, d.flag, def, d.usage+" ($"+d.env+")")
	}
	lists := []struct {
		p *[]string
		flagEnv
	}{
		{&cfg.LeafnodeRemotes, flagEnv{"leafnode-remote", "CAPACITY_LEAFNODE_REMOTES", "comma-separated leaf-node URLs of other regions to connect to (nats-leaf://host:port)"}},
		{&cfg.PeerRegions, flagEnv{"peer-regions", "CAPACITY_PEER_REGIONS", "comma-separated names of the other regions; their event streams and snapshots are mirrored here"}},
	}
	for _, l := range lists {
		*l.p = splitList(getenv(l.env))
		fs.Func(l.flag, l.usage+" ($"+l.env+")", func(v string) error {
			*l.p = splitList(v)
			return nil
		})
	}
	cfg.ClockFile = getenv(clockFileEnv)
	if err := fs.Parse(args); err != nil {
		return cfg, errUsage{err}
	}
	cfg.OTLPEndpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if envErr != nil {
		return cfg, errUsage{envErr}
	}
	if fs.NArg() > 0 {
		return cfg, errUsage{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, errUsage{err}
	}
	return cfg, nil
}

// Validate checks the configuration before anything is started.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.HTTP); err != nil {
		return fmt.Errorf("--http %q: %v", c.HTTP, err)
	}
	if c.NATSURL == "" {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			return fmt.Errorf("--nats-listen %q: %v", c.NATSListen, err)
		}
		if c.Data == "" {
			return fmt.Errorf("--data is required when NATS is embedded")
		}
	}
	if !capacity.ValidID(c.Region) {
		return fmt.Errorf("--region %q: must be 1-64 characters of [A-Za-z0-9_-]", c.Region)
	}
	if c.Instance != "" && !capacity.ValidID(c.Instance) {
		return fmt.Errorf("--instance %q: must be 1-64 characters of [A-Za-z0-9_-]", c.Instance)
	}
	if err := c.validateRegions(); err != nil {
		return err
	}
	switch {
	case c.LogFormat != "auto" && c.LogFormat != "json" && c.LogFormat != "console":
		return fmt.Errorf("--log-format %q: want auto, json or console", c.LogFormat)
	case c.Sync != SyncAlways && c.Sync != SyncStrict && c.Sync != SyncInterval:
		return fmt.Errorf("--sync %q: want %s, %s or %s", c.Sync, SyncAlways, SyncStrict, SyncInterval)
	case c.SyncInterval <= 0:
		return fmt.Errorf("--sync-interval must be positive")
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("--replicas must be between 1 and 5")
	case c.SnapshotEvery < 1:
		return fmt.Errorf("--snapshot-every must be at least 1")
	case c.MaxBatch < 1 || c.MaxBatch > 1000:
		return fmt.Errorf("--max-batch must be between 1 and 1000")
	case c.PoolBatch != "auto" && c.PoolBatch != "on" && c.PoolBatch != "off":
		return fmt.Errorf("--pool-batch %q: want auto, on or off", c.PoolBatch)
	case c.RateLimit < 0:
		return fmt.Errorf("--rate-limit must not be negative")
	case c.RateLimit > 0 && c.Tokens == "":
		return fmt.Errorf("--rate-limit limits per token: it needs --tokens")
	case c.Shutdown <= 0:
		return fmt.Errorf("--shutdown-timeout must be positive")
	case c.CheckpointEvery < 0:
		return fmt.Errorf("--checkpoint-every must be 0 or more")
	case c.CheckpointInterval <= 0:
		return fmt.Errorf("--checkpoint-interval must be positive")
	}
	return nil
}

// validateRegions checks the region topology flags.
func (c Config) validateRegions() error {
	if c.NATSURL != "" && (c.LeafnodeListen != "" || len(c.LeafnodeRemotes) > 0) {
		return fmt.Errorf("--leafnode-listen and --leafnode-remote configure the embedded NATS; with --nats-url configure leaf nodes and domains on that NATS")
	}
	if c.LeafnodeListen != "" {
		if _, port, err := net.SplitHostPort(c.LeafnodeListen); err != nil {
			return fmt.Errorf("--leafnode-listen %q: %v", c.LeafnodeListen, err)
		} else if _, err := strconv.Atoi(port); err != nil {
			return fmt.Errorf("--leafnode-listen %q: bad port", c.LeafnodeListen)
		}
	}
	for _, r := range c.LeafnodeRemotes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || (u.Scheme != "nats-leaf" && u.Scheme != "nats" && u.Scheme != "tls") {
			return fmt.Errorf("--leafnode-remote %q: want nats-leaf://host:port", r)
		}
	}
	switch {
	case c.WriteLease < 0:
		return fmt.Errorf("--write-lease must not be negative")
	case c.WriteLease > 0 && len(c.PeerRegions) == 0:
		return fmt.Errorf("--write-lease needs --peer-regions: the lease is renewed by hearing from them")
	case c.WriteLease > 0 && c.WriteLease < minWriteLease:
		return fmt.Errorf("--write-lease %v: want at least %v (the peers are read every %v)", c.WriteLease, minWriteLease, termsRefresh)
	}
	seen := map[string]bool{}
	for _, p := range c.PeerRegions {
		switch {
		case !capacity.ValidID(p):
			return fmt.Errorf("--peer-regions %q: must be 1-64 characters of [A-Za-z0-9_-]", p)
		case streams.StreamName(p) == streams.StreamName(c.Region):
			// Stream names upper-case the region: a and A would share CAPACITY_A.
			return fmt.Errorf("--peer-regions: %q is this region (stream %s)", p, streams.StreamName(p))
		case seen[streams.StreamName(p)]:
			return fmt.Errorf("--peer-regions: %q given twice (stream %s)", p, streams.StreamName(p))
		}
		seen[streams.StreamName(p)] = true
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// BatchAcrossPools reports whether commits of several pools go out as one
// atomic batch. On an R1 file stream (the embedded server) the server stages
// every batch in a file store of its own, a fixed cost of ~11 ms on this
// machine against ~0.3 ms for one fsync'd publish, and measured over HTTP
// (1,000 pools, --sync always) batching came out even with lone appends, so
// auto leaves it off there. A replicated stream stages a batch in memory and
// proposes it to its peers as one entry: auto turns it on for --replicas > 1.
func (c Config) BatchAcrossPools() bool {
	switch c.PoolBatch {
	case "on":
		return true
	case "off":
		return false
	}
	return c.Replicas > 1
}

// errUsage marks errors that come from how the program was called; main
// prints a usage hint and exits 2 for them.
type errUsage struct{ error }

func (e errUsage) Unwrap() error { return e.error }

// flagErrHelp is flag.ErrHelp, named here so main need not import flag.
var flagErrHelp = flag.ErrHelp
