package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// Commit is one pool's message in a cross-pool append: stored on the pool's subject iff the subject's last
// sequence is ExpectedSeq.
type Commit struct {
	Pool        string
	ExpectedSeq uint64
	Event       Event
}

// ConflictError is AppendAll's error when pools had moved past their expected sequences: nothing was
// stored. Pools names the pools found moved by looking each one up after the refusal.
type ConflictError struct {
	Pools []string
	Err   error // the server's answer
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("streams: conflict: pools %s changed since their expected sequences: %v", strings.Join(e.Pools, ","), e.Err)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() []error { return []error{ErrConflict, e.Err} }

// AppendAll stores one message per commit as one atomic batch: every commit or none, each only if its pool's
// subject is at its ExpectedSeq. The batch shares one write (and with sync_interval: always, one fsync) on
// the server, which is what makes committing many pools' appends together cheap. A pool may appear once.
// One commit is a plain publish, which costs less than a batch.
//
// It returns the stream sequence of each commit, in order. A refusal because pools moved is a
// *ConflictError naming them (so the caller can retry the rest at once); ErrUnknownOutcome when the
// server did not answer and the store could not find the batch. A batch found stored after a timeout or a
// conflict is a success, as with Append: retrying AppendAll with the same expected sequences and event ids
// is safe.
func (s *Store) AppendAll(ctx context.Context, commits []Commit) ([]uint64, error) {
	if err := validateCommits(commits); err != nil {
		return nil, err
	}
	if len(commits) == 1 {
		c := &commits[0]
		seq, err := s.Append(ctx, c.Pool, c.ExpectedSeq, []Event{c.Event})
		if err != nil {
			if errors.Is(err, ErrConflict) {
				return nil, &ConflictError{Pools: []string{c.Pool}, Err: err}
			}
			return nil, err
		}
		return []uint64{seq}, nil
	}
	msgs := make([]batchMsg, len(commits))
	for i := range commits {
		c := &commits[i]
		msgs[i] = batchMsg{subject: s.prefix + c.Pool, expectedSeq: c.ExpectedSeq, check: true, event: &c.Event}
	}
	ack, err := s.publishAtomic(ctx, msgs)
	var seqs []uint64
	if err == nil && ack.Error == nil {
		seqs = batchSeqs(ack.Seq, len(commits))
	} else {
		if err == nil {
			err = fmt.Errorf("nats: %w", ack.Error)
		}
		if seqs, err = s.resolveAll(ctx, commits, err); err != nil {
			return nil, err
		}
	}
	if err := s.synced(ctx); err != nil {
		return nil, err
	}
	return seqs, nil
}

// batchSeqs returns the sequences of n messages stored contiguously up to last (see the package doc on
// contiguous sequences).
func batchSeqs(last uint64, n int) []uint64 {
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = last - uint64(n-1-i)
	}
	return seqs
}

// resolveAll turns a failed cross-pool batch into AppendAll's result, the way resolve does for Append: the
// batch is atomic, so finding its first message right after the first pool's expected sequence (and its
// last message where it must be) proves it stored; otherwise a conflict is traced to the pools that moved.
func (s *Store) resolveAll(ctx context.Context, commits []Commit, pubErr error) ([]uint64, error) {
	if _, ok := pubErr.(definiteError); ok {
		return nil, pubErr
	}
	if errors.Is(pubErr, nats.ErrNoResponders) {
		return nil, fmt.Errorf("streams: append of %d pools: no stream leader answering, nothing stored: %w", len(commits), pubErr)
	}
	code, isAPI := apiErrorCode(pubErr)
	switch {
	case !isAPI, isConflictCode(code), code == codeBatchDuplicateMsgID:
	case code == codeBatchTooLarge:
		return nil, fmt.Errorf("%w: %w", ErrBatchTooLarge, pubErr)
	default:
		return nil, fmt.Errorf("streams: append of %d pools: %w", len(commits), pubErr)
	}
	lookupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.timeout)
	defer cancel()
	first := &commits[0]
	firstSeq, found, err := s.findAppend(lookupCtx, s.prefix+first.Pool, first.ExpectedSeq, []Event{first.Event})
	if err != nil {
		return nil, fmt.Errorf("%w: append of %d pools: %w (lookup failed: %v)", ErrUnknownOutcome, len(commits), pubErr, err)
	}
	if found == appendStored {
		last := &commits[len(commits)-1]
		seqs := batchSeqs(firstSeq+uint64(len(commits))-1, len(commits))
		m, err := s.getMsg(lookupCtx, msgGetRequest{Seq: seqs[len(seqs)-1]})
		if err != nil || m == nil || m.Subject != s.prefix+last.Pool || m.msgID() != last.Event.ID {
			return nil, fmt.Errorf("%w: append of %d pools: first message stored at %d, last not found where expected (%v)", ErrUnknownOutcome, len(commits), firstSeq, err)
		}
		return seqs, nil
	}
	if !isAPI && found == appendAbsent {
		// Nothing follows the first pool's expected sequence yet: the batch may still be in flight.
		return nil, fmt.Errorf("%w: append of %d pools: %w", ErrUnknownOutcome, len(commits), pubErr)
	}
	if isAPI && code == codeBatchDuplicateMsgID {
		return nil, fmt.Errorf("streams: append of %d pools: event id already stored elsewhere: %w", len(commits), pubErr)
	}
	// Refused (or can never be stored, its first check being stale): find the pools that moved.
	var moved []string
	for i := range commits {
		c := &commits[i]
		last, err := s.LastSeq(lookupCtx, c.Pool)
		if err != nil {
			return nil, fmt.Errorf("%w: append of %d pools: %w (lookup failed: %v)", ErrConflict, len(commits), pubErr, err)
		}
		if last != c.ExpectedSeq {
			moved = append(moved, c.Pool)
		}
	}
	return nil, &ConflictError{Pools: moved, Err: pubErr}
}

// validateCommits checks AppendAll's arguments before anything is sent.
func validateCommits(commits []Commit) error {
	switch {
	case len(commits) == 0:
		return invalidf("no commits")
	case len(commits) > maxBatch:
		return fmt.Errorf("%w: %d commits, at most %d", ErrBatchTooLarge, len(commits), maxBatch)
	}
	seen := make(map[string]struct{}, len(commits))
	ids := make(map[string]struct{}, len(commits))
	for i := range commits {
		c := &commits[i]
		if err := validateAppend(c.Pool, []Event{c.Event}); err != nil {
			return err
		}
		if _, dup := seen[c.Pool]; dup {
			return invalidf("pool %q twice in one batch", c.Pool)
		}
		seen[c.Pool] = struct{}{}
		if _, dup := ids[c.Event.ID]; dup {
			return invalidf("event id %q twice in one batch", c.Event.ID)
		}
		ids[c.Event.ID] = struct{}{}
	}
	return nil
}
