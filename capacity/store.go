package capacity

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"
)

// ErrStaleSequence is returned by an EventStore append whose expected
// sequence is no longer the pool's last: someone else wrote first. The
// writer reloads and decides again.
var ErrStaleSequence = errors.New("capacity: pool history moved on (stale expected sequence)")

// ErrUnknownOutcome is returned by an EventStore append that may or may not
// have been stored (a timeout the store could not resolve). The writer must
// reload before deciding again, and the caller cannot be told either way.
var ErrUnknownOutcome = errors.New("capacity: append outcome unknown")

// Recorded is an event as stored: the stream sequence of its commit (shared
// by every event of that commit) and the time the store took it.
type Recorded struct {
	Seq    uint64
	Stored time.Time
	Event  Event
}

// EventStore is a pool's history. streams.PoolEvents implements it on
// JetStream.
type EventStore interface {
	// Append stores events after the pool's last commit iff that commit is
	// at expectedSeq (0: the pool has none). All or nothing, as one commit:
	// every event of it is stored at the returned sequence. Errors wrap
	// ErrStaleSequence or ErrUnknownOutcome where those apply.
	Append(ctx context.Context, pool string, expectedSeq uint64, events []Event) (lastSeq uint64, err error)
	// AppendAll stores the commits of several pools all or nothing, each
	// iff its pool's last commit is at its ExpectedSeq, sharing one write
	// (a pool appears at most once). It returns each commit's sequence in
	// order. A refusal because pools moved is a *StaleError naming them;
	// ErrUnknownOutcome where that applies.
	AppendAll(ctx context.Context, commits []Commit) (seqs []uint64, err error)
	// Read yields the pool's events of commits after afterSeq, in order.
	Read(ctx context.Context, pool string, afterSeq uint64) iter.Seq2[Recorded, error]
	// LastSeq returns the sequence of the pool's last event, 0 if none.
	LastSeq(ctx context.Context, pool string) (uint64, error)
}

// Commit is one pool's events, to be stored as one commit right after
// ExpectedSeq.
type Commit struct {
	Pool        string
	ExpectedSeq uint64
	Events      []Event
	// Header holds extra message headers the store keeps with the commit,
	// such as a W3C traceparent; nil for none.
	Header map[string]string
}

// StaleError is EventStore.AppendAll's refusal when pools' histories moved
// on: nothing was stored. Pools names those found moved; the others may be
// appended again at once. It wraps ErrStaleSequence.
type StaleError struct {
	Pools []string
	Err   error
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("%v: pools %v: %v", ErrStaleSequence, e.Pools, e.Err)
}

// Unwrap makes errors.Is(err, ErrStaleSequence) true.
func (e *StaleError) Unwrap() []error { return []error{ErrStaleSequence, e.Err} }

// SnapshotStore keeps the latest snapshot of each pool. Snapshots are an
// optimisation: a missing or unreadable one only costs a longer replay.
// kv.PoolSnapshots implements it on a JetStream KV bucket.
type SnapshotStore interface {
	// Get returns the snapshot bytes of a pool and the sequence they
	// reflect; ErrNoSnapshot when there is none.
	Get(ctx context.Context, pool string) (seq uint64, data []byte, err error)
	// Put stores a snapshot unless a newer one is already stored.
	Put(ctx context.Context, pool string, seq uint64, data []byte) error
}

// ErrNoSnapshot is returned by SnapshotStore.Get when a pool has no snapshot.
var ErrNoSnapshot = errors.New("capacity: no snapshot")
