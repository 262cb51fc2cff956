package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Store is the JetStream event store: one stream per home region, one subject per pool.
type Store struct {
	js         jetstream.JetStream
	nc         *nats.Conn
	stream     jetstream.Stream
	region     string
	name       string // stream name, CAPACITY_<REGION>
	prefix     string // subject prefix, "capacity.<region>."
	msgGetSubj string // leader-served $JS.API.STREAM.MSG.GET.<name>
	opts       options
	inflight   chan struct{} // bounds open atomic batches
	following  bool          // opened over a mirror: reads only
}

// Event is one event to append: opaque data plus the headers the store sets.
type Event struct {
	Type    string            // event type, stored in header Event-Type; required
	Version int               // schema version, stored in header Event-Version
	ID      string            // unique id, stored as Nats-Msg-Id for deduplication; required
	Data    []byte            // payload (JSON), the message body
	Header  map[string]string // extra headers such as traceparent; optional, no Nats-* or Event-* keys
}

// Recorded is an event as stored in the stream.
type Recorded struct {
	Seq     uint64            // stream sequence
	Pool    string            // pool id, from the subject
	Type    string            // header Event-Type
	Version int               // header Event-Version
	ID      string            // header Nats-Msg-Id
	Time    time.Time         // server timestamp of the message
	Data    []byte            // message body
	Header  map[string]string // the extra headers given in Event.Header; nil if none
}

// Header names set by the store on every event.
const (
	HeaderEventType    = "Event-Type"
	HeaderEventVersion = "Event-Version"
	// HeaderCommit, HeaderCommitSeq and HeaderCommitCount are set on every
	// message of an atomic batch: the batch's id, the message's place in it
	// (1-based) and the batch's size. A single-message append has none.
	HeaderCommit      = "Capacity-Commit"
	HeaderCommitSeq   = "Capacity-Commit-Seq"
	HeaderCommitCount = "Capacity-Commit-Count"
)

const (
	subjectRoot     = "capacity"
	streamPrefix    = "CAPACITY_"
	maxBatch        = 1000 // server default streamMaxAtomicBatchSize
	maxIDLen        = 256
	hdrExpectedSubj = "Nats-Expected-Last-Subject-Sequence"
	hdrBatchID      = "Nats-Batch-Id"
	hdrBatchSeq     = "Nats-Batch-Sequence"
	hdrBatchCommit  = "Nats-Batch-Commit"
)

// New creates or updates the region's event stream, checks its configuration and returns a Store for it.
func New(ctx context.Context, js jetstream.JetStream, region string, opts ...Option) (*Store, error) {
	if js == nil {
		return nil, invalidf("nil JetStream")
	}
	if !capacity.ValidID(region) {
		return nil, invalidf("region %q: want [A-Za-z0-9_-]{1,64}", region)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	s := &Store{
		js:       js,
		nc:       js.Conn(),
		region:   region,
		name:     StreamName(region),
		prefix:   subjectRoot + "." + region + ".",
		opts:     o,
		inflight: make(chan struct{}, o.maxInflight),
	}
	s.msgGetSubj = apiPrefix(js.Options()) + "STREAM.MSG.GET." + s.name

	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	stream, err := s.ensureStream(ctx)
	if err != nil {
		return nil, err
	}
	if s.following = stream.CachedInfo().Config.Mirror != nil; !s.following {
		if err := s.checkConfig(stream.CachedInfo().Config); err != nil {
			return nil, err
		}
	}
	s.stream = stream
	return s, nil
}

// StreamName returns the name of the stream holding region's events: CAPACITY_ and the region in upper case,
// with any character other than A-Z and 0-9 replaced by an underscore.
func StreamName(region string) string {
	var b strings.Builder
	b.Grow(len(streamPrefix) + len(region))
	b.WriteString(streamPrefix)
	for _, r := range strings.ToUpper(region) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Following reports whether the Store was opened over a mirror (see the
// Following option): it cannot append.
func (s *Store) Following() bool { return s.following }

// StreamName returns the name of the Store's stream.
func (s *Store) StreamName() string { return s.name }

// Region returns the region the Store was created for.
func (s *Store) Region() string { return s.region }

// Subject returns the subject holding pool's events, "capacity.<region>.<pool>".
func (s *Store) Subject(pool string) string { return s.prefix + pool }

// desiredConfig sets on cfg every field the store relies on, keeping the others (description, placement...).
func (s *Store) desiredConfig(cfg jetstream.StreamConfig) jetstream.StreamConfig {
	cfg.Name = s.name
	cfg.Subjects = []string{s.prefix + ">"}
	cfg.Storage = jetstream.FileStorage
	cfg.Retention = jetstream.LimitsPolicy
	cfg.Replicas = s.opts.replicas
	cfg.Duplicates = s.opts.duplicateWindow
	cfg.AllowAtomicPublish = true
	cfg.AllowDirect = true
	// Nothing may remove events or add markers: each would move a pool's last sequence.
	cfg.MaxAge = 0
	cfg.MaxMsgs = -1
	cfg.MaxBytes = -1
	cfg.MaxMsgsPerSubject = -1
	cfg.AllowMsgTTL = false
	cfg.SubjectDeleteMarkerTTL = 0
	cfg.AllowRollup = false
	cfg.Discard = jetstream.DiscardOld
	return cfg
}

// ensureStream creates the stream, or updates an existing one that already belongs to this region.
func (s *Store) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	stream, err := s.js.Stream(ctx, s.name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = s.js.CreateStream(ctx, s.desiredConfig(jetstream.StreamConfig{}))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = s.js.Stream(ctx, s.name) // lost a creation race
		} else if err == nil {
			return stream, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("streams: stream %s: %w", s.name, err)
	}
	current := stream.CachedInfo().Config
	// Refuse to touch streams we do not own: updating a mirror without Mirror would promote it.
	if current.Mirror != nil && s.opts.following {
		return stream, nil
	}
	if current.Mirror != nil {
		return nil, invalidf("stream %s is a mirror; promote it explicitly before writing", s.name)
	}
	if !slices.Equal(current.Subjects, []string{s.prefix + ">"}) {
		return nil, invalidf("stream %s has subjects %v, want [%s>] (region name collision?)", s.name, current.Subjects, s.prefix)
	}
	desired := s.desiredConfig(current)
	if s.checkConfig(current) == nil {
		return stream, nil
	}
	if _, err := s.js.UpdateStream(ctx, desired); err != nil {
		return nil, fmt.Errorf("streams: update stream %s: %w", s.name, err)
	}
	// Reload so CachedInfo reflects what the server accepted.
	stream, err = s.js.Stream(ctx, s.name)
	if err != nil {
		return nil, fmt.Errorf("streams: stream %s: %w", s.name, err)
	}
	return stream, nil
}

// checkConfig reports, wrapping ErrInvalid, the first way cfg differs from what the store needs.
func (s *Store) checkConfig(cfg jetstream.StreamConfig) error {
	var problems []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	check(slices.Equal(cfg.Subjects, []string{s.prefix + ">"}), "subjects %v", cfg.Subjects)
	check(cfg.Storage == jetstream.FileStorage, "storage %v, want file", cfg.Storage)
	check(cfg.Retention == jetstream.LimitsPolicy, "retention %v, want limits", cfg.Retention)
	check(cfg.AllowAtomicPublish, "atomic publish disabled")
	check(cfg.AllowDirect, "direct get disabled")
	check(cfg.Replicas == s.opts.replicas, "replicas %d, want %d", cfg.Replicas, s.opts.replicas)
	check(cfg.Duplicates == s.opts.duplicateWindow, "duplicate window %v, want %v", cfg.Duplicates, s.opts.duplicateWindow)
	check(cfg.MaxAge == 0, "max age %v, want none", cfg.MaxAge)
	check(cfg.MaxMsgs <= 0, "max msgs %d, want none", cfg.MaxMsgs)
	check(cfg.MaxBytes <= 0, "max bytes %d, want none", cfg.MaxBytes)
	check(cfg.MaxMsgsPerSubject <= 0, "max msgs per subject %d, want none", cfg.MaxMsgsPerSubject)
	check(!cfg.AllowMsgTTL, "per-message TTL allowed")
	check(cfg.SubjectDeleteMarkerTTL == 0, "subject delete markers enabled")
	check(!cfg.AllowRollup, "rollups allowed")
	check(cfg.Mirror == nil, "stream is a mirror")
	check(!cfg.Sealed, "stream is sealed")
	if len(problems) > 0 {
		return invalidf("stream %s config: %s", s.name, strings.Join(problems, "; "))
	}
	return nil
}

// LastSeq returns the last sequence stored on the pool's subject (0 if none), as seen by the stream leader.
func (s *Store) LastSeq(ctx context.Context, pool string) (uint64, error) {
	if !capacity.ValidID(pool) {
		return 0, invalidf("pool %q", pool)
	}
	m, err := s.getMsg(ctx, msgGetRequest{LastFor: s.prefix + pool})
	if err != nil {
		return 0, fmt.Errorf("streams: last seq of %s: %w", pool, err)
	}
	if m == nil {
		return 0, nil
	}
	return m.Seq, nil
}

// StreamLastSeq returns the last sequence of the whole stream (0 if empty).
func (s *Store) StreamLastSeq(ctx context.Context) (uint64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("streams: stream info %s: %w", s.name, err)
	}
	return info.State.LastSeq, nil
}

// Pools lists, sorted, the ids of the pools that have events.
func (s *Store) Pools(ctx context.Context) ([]string, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(s.prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("streams: stream info %s: %w", s.name, err)
	}
	pools := make([]string, 0, len(info.State.Subjects))
	for subject := range info.State.Subjects {
		if pool, ok := strings.CutPrefix(subject, s.prefix); ok {
			pools = append(pools, pool)
		}
	}
	slices.Sort(pools)
	return pools, nil
}

// withTimeout bounds ctx by the configured timeout unless it already has a deadline.
func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opts.timeout)
}

// apiPrefix returns the JetStream API subject prefix the JetStream context uses, ending with a dot.
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.APIPrefix != "" && o.APIPrefix != jetstream.DefaultAPIPrefix:
		if !strings.HasSuffix(o.APIPrefix, ".") {
			return o.APIPrefix + "."
		}
		return o.APIPrefix
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	default:
		return jetstream.DefaultAPIPrefix
	}
}
