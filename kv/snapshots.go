package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the bucket name to use when the deployment does not choose one.
const DefaultBucket = "pool_snapshots"

var (
	// ErrNotFound means there is no snapshot under the key.
	ErrNotFound = errors.New("kv: snapshot not found")
	// ErrCorrupt means the stored value is not a snapshot; Put overwrites it.
	ErrCorrupt = errors.New("kv: snapshot corrupt")
	// ErrInvalid means an argument or the bucket's configuration is unusable.
	ErrInvalid = errors.New("kv: invalid")
)

// Snapshots stores the latest snapshot of each pool in a JetStream KV bucket.
type Snapshots struct {
	kv     jetstream.KeyValue
	bucket string
	opts   options

	mu   sync.Mutex
	last map[string]stored // large values this handle stored last, by key
}

// stored is the revision and sequence of a value Put stored.
//
// Put must know the stored value's sequence (snapshots never move
// backwards) and revision (to compare-and-set). Reading them means reading
// the whole value: several MB for a pool with 100,000 reservations, read
// from the store, copied through the connection and thrown away, every
// snapshot. So for large values Put remembers what it stored and next time
// goes straight to the compare-and-set on that revision; if anything else
// wrote or deleted the key since, the revision differs, the update is
// refused and Put reads the value as before. Small values are not
// remembered: reading them back is cheap, and the map would grow with the
// number of pools.
type stored struct{ rev, seq uint64 }

// rememberFrom is the smallest value whose revision Put remembers.
const rememberFrom = 64 << 10

// Snapshot is a stored snapshot: the state as of stream sequence Seq, and the KV revision holding it.
type Snapshot struct {
	Key      string // bucket key
	Seq      uint64 // last event sequence folded into Data
	Data     []byte // the state, opaque bytes
	Revision uint64 // KV revision of the value
}

// value is the JSON form of a snapshot in the bucket written by earlier
// versions: {"seq":N,"state":<Data>}. It is still read.
type value struct {
	Seq   *uint64         `json:"seq"`
	State json.RawMessage `json:"state"`
}

// header is the first line of a snapshot in the bucket: {"seq":N,"bytes":L},
// then a newline and the L bytes of the state.
type header struct {
	Seq   *uint64 `json:"seq"`
	Bytes *int    `json:"bytes"`
}

var (
	validBucket = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	validKey    = regexp.MustCompile(`^[-/_=.A-Za-z0-9]+$`) // as nats.go's kv.go, plus no leading/trailing dot
)

// New creates the bucket if needed, or updates it to the options, checks its configuration and returns
// Snapshots on it.
func New(ctx context.Context, js jetstream.JetStream, bucket string, opts ...Option) (*Snapshots, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalid)
	}
	if !validBucket.MatchString(bucket) {
		return nil, fmt.Errorf("%w: bucket name %q", ErrInvalid, bucket)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "latest snapshot of each capacity pool",
		History:     o.history,
		Storage:     jetstream.FileStorage,
		Replicas:    o.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv: bucket %s: %w", bucket, err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("kv: bucket %s status: %w", bucket, err)
	}
	cfg := status.Config()
	if cfg.Storage != jetstream.FileStorage || status.History() != int64(o.history) || status.TTL() != 0 || cfg.Replicas != o.replicas {
		return nil, fmt.Errorf("%w: bucket %s config storage=%v history=%d ttl=%v replicas=%d",
			ErrInvalid, bucket, cfg.Storage, status.History(), status.TTL(), cfg.Replicas)
	}
	return &Snapshots{kv: kv, bucket: bucket, opts: o}, nil
}

// Bucket returns the bucket's name.
func (s *Snapshots) Bucket() string { return s.bucket }

// Get returns the snapshot stored under key: ErrNotFound if there is none, ErrCorrupt (wrapped, with the
// reason) if the value does not decode. Reads may be served by a bucket replica and lag the latest Put.
func (s *Snapshots) Get(ctx context.Context, key string) (Snapshot, error) {
	if err := checkKey(key); err != nil {
		return Snapshot{}, err
	}
	entry, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Snapshot{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("kv: get %s: %w", key, err)
	}
	seq, data, err := decode(entry.Value())
	if err != nil {
		return Snapshot{}, fmt.Errorf("%w: %s revision %d: %v", ErrCorrupt, key, entry.Revision(), err)
	}
	return Snapshot{Key: key, Seq: seq, Data: data, Revision: entry.Revision()}, nil
}

// Put stores data as the snapshot at seq under key unless the stored snapshot is already at seq or later,
// in which case it does nothing: snapshots never move backwards. A corrupt stored value is overwritten.
// Concurrent Puts are resolved by compare-and-set on the key's revision, retried a bounded number of times.
func (s *Snapshots) Put(ctx context.Context, key string, seq uint64, data []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(data) == 0 {
		return fmt.Errorf("%w: empty snapshot for %s", ErrInvalid, key)
	}
	val := encode(seq, data)
	if last, ok := s.lastStored(key); ok && last.seq < seq {
		rev, err := s.kv.Update(ctx, key, val, last.rev)
		if err == nil {
			s.remember(key, rev, seq, len(val))
			return nil
		}
		// Written or deleted by someone else since, or the bucket is gone:
		// read what is there, as for any key.
		s.forget(key)
	}
	for range s.opts.attempts {
		entry, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// Create also covers a key whose last value is a delete marker.
			rev, err := s.kv.Create(ctx, key, val)
			if err == nil {
				s.remember(key, rev, seq, len(val))
				return nil
			}
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // someone created it first: compare with theirs
			}
			return fmt.Errorf("kv: create %s: %w", key, err)
		case err != nil:
			return fmt.Errorf("kv: get %s: %w", key, err)
		}
		if stored, _, err := decode(entry.Value()); err == nil && stored >= seq {
			return nil
		}
		rev, err := s.kv.Update(ctx, key, val, entry.Revision())
		if err == nil {
			s.remember(key, rev, seq, len(val))
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("kv: update %s: %w", key, err)
		}
	}
	return fmt.Errorf("kv: put %s: still contended after %d attempts", key, s.opts.attempts)
}

// Delete removes the snapshot under key; deleting a missing key is not an error.
func (s *Snapshots) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.forget(key)
	if err := s.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("kv: delete %s: %w", key, err)
	}
	return nil
}

func (s *Snapshots) lastStored(key string) (stored, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.last[key]
	return last, ok
}

func (s *Snapshots) remember(key string, rev, seq uint64, size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size < rememberFrom {
		delete(s.last, key) // it shrank: read it back next time
		return
	}
	if s.last == nil {
		s.last = make(map[string]stored)
	}
	s.last[key] = stored{rev: rev, seq: seq}
}

func (s *Snapshots) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, key)
}

// encode returns the bucket value for a snapshot: a JSON header line, then
// the state's bytes as they are.
func encode(seq uint64, data []byte) []byte {
	b := make([]byte, 0, len(data)+48)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(len(data)), 10)
	b = append(b, "}\n"...)
	return append(b, data...)
}

// decode parses a bucket value, in either form, requiring every field.
func decode(raw []byte) (uint64, []byte, error) {
	if line, rest, ok := bytes.Cut(raw, []byte("\n")); ok {
		var h header
		if err := json.Unmarshal(line, &h); err == nil && h.Bytes != nil {
			switch {
			case h.Seq == nil:
				return 0, nil, errors.New(`missing "seq"`)
			case *h.Bytes != len(rest) || len(rest) == 0:
				return 0, nil, fmt.Errorf("state is %d bytes, header says %d", len(rest), *h.Bytes)
			}
			return *h.Seq, rest, nil
		}
	}
	var v value
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, nil, err
	}
	if v.Seq == nil {
		return 0, nil, errors.New(`missing "seq"`)
	}
	if len(v.State) == 0 {
		return 0, nil, errors.New(`missing "state"`)
	}
	return *v.Seq, v.State, nil
}

// checkKey accepts any valid KV key.
func checkKey(key string) error {
	if !validKey.MatchString(key) || key[0] == '.' || key[len(key)-1] == '.' {
		return fmt.Errorf("%w: key %q", ErrInvalid, key)
	}
	return nil
}

// DeleteRegion deletes every pool snapshot of region (keys "<region>.*"):
// a region setting aside a diverged copy of its stream must not load a
// snapshot folded from the tail it set aside.
func (s *Snapshots) DeleteRegion(ctx context.Context, region string) (int, error) {
	keys, err := s.kv.ListKeysFiltered(ctx, region+".>")
	if err != nil {
		return 0, fmt.Errorf("kv: snapshots of %s: %w", region, err)
	}
	s.mu.Lock()
	for key := range s.last {
		if strings.HasPrefix(key, region+".") {
			delete(s.last, key)
		}
	}
	s.mu.Unlock()
	n := 0
	for key := range keys.Keys() {
		if err := s.kv.Delete(ctx, key); err != nil {
			return n, fmt.Errorf("kv: delete snapshot %s: %w", key, err)
		}
		n++
	}
	return n, nil
}
