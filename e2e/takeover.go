package e2e

import (
	"fmt"
	"math"

	"github.com/capacityd/capacityd/capacity"
)

// A takeover's history is two writers' in a row: region a wrote its pools
// until it was killed, region b promoted its copy of a's stream and wrote
// them from then on. The ground truth is b's stream: a mirror keeps a's
// sequences, so b's copy is a's stream up to the recovery point (the
// promote's last_seq) and b's own writes after it. What a stored after the
// recovery point (its tail) never reached b: the asynchronous window. The
// check runs over the whole history, both regions, against b's stream,
// with the window taken out as follows, and nothing else:
//
//   - A write a acknowledged whose answer names a version past the
//     recovery point, and whose event a's own stream (its copy set aside
//     when it returned) holds past the recovery point, is in the window: a
//     promised it and the takeover lost it, which a takeover may do. It
//     is left out of the history and counted. (Past the recovery point,
//     not at the version answered: a repeated confirm or release answers
//     with the pool's version, its event may be earlier in the tail.)
//     Any other acknowledged write stays: if b's stream lacks it, the
//     check reports it lost, so a write acknowledged before the recovery
//     point that the mirror dropped, one acknowledged by b after the
//     promotion, or one a acknowledged and never stored, fails the test.
//   - An unknown write of a is resolved against b's stream like any other:
//     one stored only in a's tail did not happen in this history.
//   - A read a answered with a version past the recovery point reflects
//     a's tail, a state that is not in this history: left out. A read at
//     or before it saw a state b's stream has, and is checked.
//   - A refusal of a (insufficient capacity, conflict, ...) names no
//     version; it may have been decided on a state that includes a's tail
//     only if it returned after the call of the first operation whose
//     event is in a's tail on that pool (that event was decided after its
//     call). Those refusals are left out; the earlier ones are checked.
//
// So every operation left in can make the check fail: a hold b granted
// over capacity, or one a granted before the recovery point, is illegal in
// the model; b refusing a hold that fits in the state its stream shows (a
// fold of a's tail it should not have) is illegal too; a read in b that
// does not match the stream's state is illegal.

// TakeoverSplit is a takeover's history with the window taken out.
type TakeoverSplit struct {
	// Ops is what the check gets: every operation of both regions but the
	// ones below.
	Ops []Op
	// Window are the writes a acknowledged that only its tail holds: the
	// asynchronous window.
	Window []Op
	// TailReads are a's reads that reflect its tail; Tainted its refusals
	// that may have been decided on it.
	TailReads, Tainted []Op
}

// SplitTakeover takes the window out of a takeover's history (see above).
// fromOld tells the operations sent to the old writer; recoveryPoint is
// the promote's last_seq; oldStream is the old writer's stream as it kept
// it (every event, or at least those after the recovery point).
func SplitTakeover(history []Op, fromOld func(Op) bool, recoveryPoint uint64, oldStream []StreamEvent) TakeoverSplit {
	type fact struct {
		kind     string
		pool, id string
	}
	inTail := map[fact]bool{}
	tailPools := map[string]bool{}
	for _, ev := range oldStream {
		if ev.Seq <= recoveryPoint || ev.Err != "" {
			continue
		}
		tailPools[ev.Pool] = true
		inTail[fact{kind: ev.Type, pool: ev.Pool, id: ev.ReservationID}] = true
	}
	eventType := map[Kind]string{
		KindHold: capacity.HeldType, KindConfirm: capacity.ConfirmedType,
		KindRelease: capacity.ReleasedType, KindExtend: capacity.ExtendedType,
	}
	// firstTailCall: per pool, the earliest call of an operation of the old
	// writer whose event is in the tail (stored at any sequence past the
	// recovery point, whatever its outcome).
	firstTailCall := map[string]int64{}
	tailOf := func(op Op) bool {
		typ, ok := eventType[op.Kind]
		return ok && inTail[fact{kind: typ, pool: op.Pool, id: op.ReservationID}]
	}
	matched := map[string]bool{}
	for _, op := range history {
		if fromOld(op) && op.Kind != KindRead && tailOf(op) {
			matched[op.Pool] = true
			if c, ok := firstTailCall[op.Pool]; !ok || op.Call < c {
				firstTailCall[op.Pool] = op.Call
			}
		}
	}
	for pool := range tailPools {
		if !matched[pool] {
			// A tail event no operation explains (a sweeper's lapse):
			// every refusal of the old writer on that pool may have seen it.
			firstTailCall[pool] = math.MinInt64
		}
	}
	var s TakeoverSplit
	for _, op := range history {
		if !fromOld(op) {
			s.Ops = append(s.Ops, op)
			continue
		}
		switch {
		case op.Outcome == OK && op.Kind == KindRead && op.Version > recoveryPoint:
			s.TailReads = append(s.TailReads, op)
		case op.Outcome == OK && op.Kind != KindRead && op.Version > recoveryPoint && tailOf(op):
			s.Window = append(s.Window, op)
		case op.Outcome == Rejected && hasTail(firstTailCall, op.Pool) && op.Return > firstTailCall[op.Pool]:
			s.Tainted = append(s.Tainted, op)
		default:
			s.Ops = append(s.Ops, op)
		}
	}
	return s
}

func hasTail(firstTailCall map[string]int64, pool string) bool {
	_, ok := firstTailCall[pool]
	return ok
}

// Figures is the split's one-line summary.
func (s TakeoverSplit) Figures() string {
	holds := 0
	for _, op := range s.Window {
		if op.Kind == KindHold {
			holds++
		}
	}
	return fmt.Sprintf("asynchronous window: %d acknowledged writes of the old writer (%d holds) only in its tail; left out of the check with them: %d reads of the tail, %d refusals that may have seen it",
		len(s.Window), holds, len(s.TailReads), len(s.Tainted))
}
