package views

import (
	"github.com/capacityd/capacityd/capacity"
)

// fold is one pool as a read model holds it: the domain's Pool evolved
// event by event. Readers take what they need from it with the Pool's
// methods that write nothing (Units, LapsedAt, NextDeadline, Reservation),
// never FiguresAt, which writes its memo, so must not run under a read lock.
type fold struct {
	pool    capacity.Pool
	lastSeq uint64 // highest seq applied to this pool
}

// apply evolves the pool with the events of one commit stored at seq. It
// returns false, changing nothing, when seq was already applied: every
// event of a commit shares its sequence, so a commit is applied whole or
// not at all.
func (f *fold) apply(seq uint64, events []capacity.Event) bool {
	if seq <= f.lastSeq {
		return false
	}
	f.lastSeq = seq
	for _, e := range events {
		f.pool.Evolve(e, seq)
	}
	return true
}

// apply is fold.apply for a row, whose pool is decoded first if it still
// has a body from a checkpoint; a body that does not decode applies
// nothing and returns the error (see materialize).
func (r *row) apply(seq uint64, events []capacity.Event) (bool, error) {
	if seq <= r.lastSeq {
		return false, nil
	}
	if err := r.materialize(); err != nil {
		return false, err
	}
	return r.fold.apply(seq, events), nil
}
