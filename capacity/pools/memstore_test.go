package pools_test

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// memStore is an in-memory capacity.EventStore with one global sequence,
// like a stream. Its appendHook, when set, runs before every append and
// decides its fate: nil lets it through, an error fails it (stored, when the
// error says the outcome is unknown but the write landed, is set by the
// hook through the store's methods). It lets the write path's rare outcomes
// be produced on demand.
type memStore struct {
	mu      sync.Mutex
	seq     uint64
	commits map[string][]memCommit
	appends int
	batches []int         // commits per successful AppendAll
	delay   time.Duration // each Append and AppendAll takes this long

	appendHook func(ctx context.Context, pool string, expectedSeq uint64, events []capacity.Event) error
	// lastSeqHook, when set, runs at the start of every LastSeq (a tail
	// check): a test's way to act while a batch is between its decision and
	// its answer.
	lastSeqHook func()
}

type memCommit struct {
	seq    uint64
	events []capacity.Event
}

func newMemStore() *memStore { return &memStore{commits: make(map[string][]memCommit)} }

// Append implements capacity.EventStore.
func (m *memStore) Append(ctx context.Context, pool string, expectedSeq uint64, events []capacity.Event) (uint64, error) {
	time.Sleep(m.delay)
	if hook := m.hook(); hook != nil {
		if err := hook(ctx, pool, expectedSeq, events); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %v", capacity.ErrUnknownOutcome, err)
	}
	return m.write(pool, expectedSeq, events)
}

func (m *memStore) hook() func(context.Context, string, uint64, []capacity.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appendHook
}

func (m *memStore) setHook(h func(context.Context, string, uint64, []capacity.Event) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appendHook = h
}

func (m *memStore) setLastSeqHook(h func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastSeqHook = h
}

// AppendAll implements capacity.EventStore: all commits or none. The hook
// runs for each commit first; the first error it returns fails the batch.
func (m *memStore) AppendAll(ctx context.Context, commits []capacity.Commit) ([]uint64, error) {
	time.Sleep(m.delay)
	if hook := m.hook(); hook != nil {
		for _, c := range commits {
			if err := hook(ctx, c.Pool, c.ExpectedSeq, c.Events); err != nil {
				return nil, err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", capacity.ErrUnknownOutcome, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var moved []string
	for _, c := range commits {
		if m.lastLocked(c.Pool) != c.ExpectedSeq {
			moved = append(moved, c.Pool)
		}
	}
	if moved != nil {
		return nil, &capacity.StaleError{Pools: moved, Err: fmt.Errorf("batch refused")}
	}
	seqs := make([]uint64, len(commits))
	for i, c := range commits {
		m.seq++
		seqs[i] = m.seq
		m.commits[c.Pool] = append(m.commits[c.Pool], memCommit{seq: m.seq, events: append([]capacity.Event(nil), c.Events...)})
	}
	m.appends++
	m.batches = append(m.batches, len(commits))
	return seqs, nil
}

// write stores events as one commit if the pool is at expectedSeq.
func (m *memStore) write(pool string, expectedSeq uint64, events []capacity.Event) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if last := m.lastLocked(pool); last != expectedSeq {
		return 0, fmt.Errorf("%w: pool %s at %d, not %d", capacity.ErrStaleSequence, pool, last, expectedSeq)
	}
	m.seq++
	m.appends++
	m.commits[pool] = append(m.commits[pool], memCommit{seq: m.seq, events: append([]capacity.Event(nil), events...)})
	return m.seq, nil
}

func (m *memStore) lastLocked(pool string) uint64 {
	if c := m.commits[pool]; len(c) > 0 {
		return c[len(c)-1].seq
	}
	return 0
}

// Read implements capacity.EventStore.
func (m *memStore) Read(ctx context.Context, pool string, afterSeq uint64) iter.Seq2[capacity.Recorded, error] {
	m.mu.Lock()
	commits := append([]memCommit(nil), m.commits[pool]...)
	m.mu.Unlock()
	return func(yield func(capacity.Recorded, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(capacity.Recorded{}, err)
			return
		}
		for _, c := range commits {
			if c.seq <= afterSeq {
				continue
			}
			for _, e := range c.events {
				if !yield(capacity.Recorded{Seq: c.seq, Stored: time.Time{}, Event: e}, nil) {
					return
				}
			}
		}
	}
}

// LastSeq implements capacity.EventStore.
func (m *memStore) LastSeq(ctx context.Context, pool string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	hook := m.lastSeqHook
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastLocked(pool), nil
}

// events returns every event of the pool, in order.
func (m *memStore) events(pool string) []capacity.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []capacity.Event
	for _, c := range m.commits[pool] {
		out = append(out, c.events...)
	}
	return out
}

// lastSeq returns the sequence of the pool's last commit.
func (m *memStore) lastSeq(pool string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastLocked(pool)
}

// batchSizes returns the commits of each successful AppendAll.
func (m *memStore) batchSizes() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int(nil), m.batches...)
}

// commitCount returns how many appends succeeded.
func (m *memStore) commitCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appends
}

// noSnapshots is a capacity.SnapshotStore that never has one.
type noSnapshots struct{}

func (noSnapshots) Get(context.Context, string) (uint64, []byte, error) {
	return 0, nil, capacity.ErrNoSnapshot
}
func (noSnapshots) Put(context.Context, string, uint64, []byte) error { return nil }
