package pools

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// committer appends the commits of many pools together: whatever is waiting
// when the store is free goes out as one AppendAll (one atomic batch: one
// write and, with fsync before ack, one fsync for all of them). One batch is
// in flight at a time: while it is, the next one fills up. Measured here
// (NATS-NOTES, issue 14): fewer, fuller batches beat several in flight, since
// a batch's cost is nearly all fixed. A lone commit is a plain publish, so
// there is no batch cost at low load.
//
// A unit is what must be stored all or nothing: one pool's group commit, or
// (later) a booking's commits over several pools. When the store refuses a
// batch because some pools moved (another instance wrote first), the units
// touching those pools get ErrStaleSequence and the rest go out again at
// once: one contended pool does not fail or delay the others for more than
// one round.
type committer struct {
	store      capacity.EventStore
	in         chan *unit
	maxCommits int
	minBatch   int // fewer commits than this go out as lone appends, side by side
	timeout    time.Duration
	stats      *counters
	done       chan struct{}
}

// unit is commits that must be stored together, and where to say how it went.
type unit struct {
	commits []capacity.Commit
	ctx     context.Context // the caller's: a unit whose caller gave up before it was sent is dropped
	result  chan unitResult // buffered, 1
}

type unitResult struct {
	seqs []uint64
	err  error
}

func newCommitter(store capacity.EventStore, minBatch, maxCommits int, timeout time.Duration, stats *counters) *committer {
	return &committer{
		store: store, in: make(chan *unit, maxCommits), maxCommits: maxCommits, minBatch: minBatch,
		timeout: timeout, stats: stats, done: make(chan struct{}),
	}
}

// append hands commits to the committer and waits for their outcome. A
// caller that stops waiting (ctx done) after handing them over cannot know
// whether they were stored: ErrUnknownOutcome.
func (c *committer) append(ctx context.Context, commits ...capacity.Commit) ([]uint64, error) {
	u := &unit{commits: commits, ctx: ctx, result: make(chan unitResult, 1)}
	select {
	case c.in <- u:
	case <-ctx.Done():
		return nil, ctx.Err() // never handed over: nothing stored
	case <-c.done:
		return nil, errShuttingDown
	}
	select {
	case r := <-u.result:
		return r.seqs, r.err
	case <-ctx.Done():
		return nil, errors.Join(capacity.ErrUnknownOutcome, ctx.Err())
	}
}

// run takes units off the queue until stop is closed, then answers whatever
// is still queued as not stored.
func (c *committer) run(stop <-chan struct{}) {
	defer close(c.done)
	var carry *unit // a unit that did not fit in the last batch
	batch := make([]*unit, 0, c.maxCommits)
	for {
		if carry == nil {
			select {
			case carry = <-c.in:
			case <-stop:
				c.failQueued()
				return
			}
		}
		batch = append(batch[:0], carry)
		n := len(carry.commits)
		carry = nil
	fill:
		for n < c.maxCommits {
			select {
			case u := <-c.in:
				if n+len(u.commits) > c.maxCommits {
					carry = u
					break fill
				}
				batch = append(batch, u)
				n += len(u.commits)
			default:
				break fill
			}
		}
		c.commit(batch)
		clear(batch)
	}
}

func (c *committer) failQueued() {
	for {
		select {
		case u := <-c.in:
			u.result <- unitResult{err: errShuttingDown}
		default:
			return
		}
	}
}

// commit appends the units of one batch, dropping the units whose pools
// moved and going again with the rest.
func (c *committer) commit(batch []*unit) {
	live := batch[:0:0]
	for _, u := range batch {
		if err := u.ctx.Err(); err != nil {
			u.result <- unitResult{err: err} // the caller gave up before it was sent: nothing stored
			continue
		}
		live = append(live, u)
	}
	total := 0
	for _, u := range live {
		total += len(u.commits)
	}
	if total < c.minBatch {
		// Too few to pay for a batch's fixed cost: each unit on its own,
		// all at once (the server still serialises them, one write each).
		var wg sync.WaitGroup
		for _, u := range live {
			wg.Go(func() { c.alone(u) })
		}
		wg.Wait()
		return
	}
	for len(live) > 0 {
		var commits []capacity.Commit
		for _, u := range live {
			commits = append(commits, u.commits...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		var seqs []uint64
		var err error
		seqs, err = c.appendCommits(ctx, commits)
		cancel()
		if len(commits) > 1 {
			c.stats.batches.Add(1)
			c.stats.batchedCommits.Add(uint64(len(commits)))
		}
		if err == nil {
			for _, u := range live {
				u.result <- unitResult{seqs: seqs[:len(u.commits):len(u.commits)]}
				seqs = seqs[len(u.commits):]
			}
			return
		}
		var stale *capacity.StaleError
		if !errors.As(err, &stale) || len(stale.Pools) == 0 || len(live) == 1 {
			for _, u := range live {
				u.result <- unitResult{err: err}
			}
			return
		}
		// Some pools moved: their units must reload and decide again; the
		// others were refused only because they shared the batch.
		rest := live[:0]
		for _, u := range live {
			if slices.ContainsFunc(u.commits, func(cm capacity.Commit) bool { return slices.Contains(stale.Pools, cm.Pool) }) {
				u.result <- unitResult{err: err}
			} else {
				rest = append(rest, u)
			}
		}
		if len(rest) == len(live) {
			for _, u := range live { // the store named pools not in the batch
				u.result <- unitResult{err: err}
			}
			return
		}
		live = rest
	}
}

// alone appends one unit by itself.
func (c *committer) alone(u *unit) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	seqs, err := c.appendCommits(ctx, u.commits)
	u.result <- unitResult{seqs: seqs, err: err}
}

// appendCommits stores commits all or nothing: a lone commit as a plain
// append, several as one batch.
func (c *committer) appendCommits(ctx context.Context, commits []capacity.Commit) ([]uint64, error) {
	if len(commits) == 1 {
		cm := commits[0]
		seq, err := c.store.Append(withTraceHeader(ctx, cm.Header), cm.Pool, cm.ExpectedSeq, cm.Events)
		if err != nil {
			return nil, err
		}
		return []uint64{seq}, nil
	}
	return c.store.AppendAll(ctx, commits)
}
