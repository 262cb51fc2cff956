package e2e

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"

	"github.com/anishathalye/porcupine"
)

// The model must catch what the fault scenarios look for; these histories
// need no service.
func TestModel(t *testing.T) {
	caps := map[string]int{"p": 2}
	hold := func(c int, id string, q int, call, ret int64, out Outcome, problem string) Op {
		return Op{Client: c, Kind: KindHold, Pool: "p", ReservationID: id, Quantity: q, Call: call, Return: ret, Outcome: out, Problem: problem}
	}
	read := func(c int, call, ret int64, held, confirmed int) Op {
		return Op{Client: c, Kind: KindRead, Pool: "p", Call: call, Return: ret, Outcome: OK, Capacity: 2, Held: held, Confirmed: confirmed}
	}
	other := func(c int, k Kind, id string, call, ret int64, out Outcome, problem string) Op {
		return Op{Client: c, Kind: k, Pool: "p", ReservationID: id, Call: call, Return: ret, Outcome: out, Problem: problem}
	}
	// Times in the pool's recorded time: a hold decided at t0+at seconds,
	// for ttl seconds; the pool's time reaching t0+at seconds, lapsing ids.
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	timed := func(op Op, at, ttl float64) Op {
		op.At, op.ExpiresAt = sec(at), sec(at+ttl)
		return op
	}
	lapse := func(c int, at float64, call, ret int64, ids ...string) Op {
		return Op{Client: c, Kind: KindLapse, Pool: "p", At: sec(at), Lapses: ids, Call: call, Return: ret, Outcome: OK}
	}
	nth := func(op Op, seq int) Op {
		op.LapseSeq = seq
		return op
	}
	tests := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"sequential fill", []Op{
			hold(0, "a", 1, 0, 1, OK, ""), hold(0, "b", 1, 2, 3, OK, ""),
			hold(0, "c", 1, 4, 5, Rejected, "insufficient-capacity"), read(0, 6, 7, 2, 0),
		}, porcupine.Ok},
		{"overbooked", []Op{hold(0, "a", 2, 0, 1, OK, ""), hold(1, "b", 1, 2, 3, OK, "")}, porcupine.Illegal},
		{"refused although it fits", []Op{hold(0, "a", 1, 0, 1, Rejected, "insufficient-capacity")}, porcupine.Illegal},
		{"concurrent race for the last units", []Op{
			hold(0, "a", 2, 0, 10, Rejected, "insufficient-capacity"), hold(1, "b", 2, 1, 9, OK, ""),
		}, porcupine.Ok},
		{"stale read", []Op{hold(0, "a", 1, 0, 1, OK, ""), read(1, 2, 3, 0, 0)}, porcupine.Illegal},
		{"confirm, release, reads", []Op{
			hold(0, "a", 2, 0, 1, OK, ""), other(0, KindConfirm, "a", 2, 3, OK, ""), read(1, 4, 5, 0, 2),
			other(0, KindRelease, "a", 6, 7, OK, ""), other(0, KindConfirm, "a", 8, 9, Rejected, "conflict"),
			read(1, 10, 11, 0, 0), hold(2, "b", 2, 12, 13, OK, ""),
		}, porcupine.Ok},
		{"release of an unknown reservation", []Op{other(0, KindRelease, "zz", 0, 1, OK, "")}, porcupine.Illegal},
		{"unknown hold that happened, late", []Op{
			hold(0, "a", 2, 0, math.MaxInt64, OK, ""), read(1, 5, 6, 0, 0), read(1, 7, 8, 2, 0),
		}, porcupine.Ok},
		{"acknowledged release forgotten", []Op{
			hold(0, "a", 2, 0, 1, OK, ""), other(0, KindRelease, "a", 2, 3, OK, ""), read(1, 4, 5, 2, 0),
		}, porcupine.Illegal},
		{"a lapse frees units and refuses the confirm", []Op{
			timed(hold(0, "a", 2, 0, 1, OK, ""), 0, 2), lapse(9, 2, 1, math.MaxInt64, "a"),
			timed(hold(1, "b", 2, 3, 4, OK, ""), 2.5, 2), other(0, KindConfirm, "a", 5, 6, Rejected, "hold-expired"),
			other(0, KindRelease, "a", 7, 8, OK, ""), read(1, 9, 10, 2, 0),
		}, porcupine.Ok},
		{"confirmed after its lapse", []Op{
			timed(hold(0, "a", 2, 0, 1, OK, ""), 0, 2), lapse(9, 2, 1, 2, "a"),
			other(0, KindConfirm, "a", 5, 6, OK, ""),
		}, porcupine.Illegal},
		{"confirmed after a refusal said it expired", []Op{
			timed(hold(0, "a", 1, 0, 1, OK, ""), 0, 2), lapse(9, 2, 1, math.MaxInt64, "a"),
			other(1, KindConfirm, "a", 2, 3, Rejected, "hold-expired"), other(2, KindConfirm, "a", 4, 5, OK, ""),
		}, porcupine.Illegal},
		// TestFaultClockSkew, pool hot-1: a read on the instance whose clock
		// had jumped ahead showed a hold lapsed, then reads on the other
		// showed it held.
		{"lapse undone by a later read", []Op{
			timed(hold(0, "a", 2, 0, 1, OK, ""), 0, 2), lapse(9, 2, 1, math.MaxInt64, "a"),
			read(1, 2, 3, 0, 0), read(2, 4, 5, 2, 0),
		}, porcupine.Illegal},
		{"units of a lapsed hold given away, then it is confirmed", []Op{
			timed(hold(0, "a", 2, 0, 1, OK, ""), 0, 2), lapse(9, 2, 1, math.MaxInt64, "a"),
			timed(hold(1, "b", 2, 2, 3, OK, ""), 2.5, 10), other(0, KindConfirm, "a", 4, 5, OK, ""),
		}, porcupine.Illegal},
		{"holds of one deadline lapse together", []Op{
			timed(hold(0, "a", 1, 0, 1, OK, ""), 0, 2), timed(hold(1, "b", 1, 0, 1, OK, ""), 0, 2),
			lapse(9, 2, 1, math.MaxInt64, "a", "b"),
			read(2, 2, 3, 2, 0), read(2, 4, 5, 0, 0),
		}, porcupine.Ok},
		// Both holds are shown lapsing by the stream; b, due later, is
		// refused as expired before a, due earlier, is confirmed: the
		// pool's time would have gone back.
		{"lapses out of deadline order", []Op{
			timed(hold(0, "a", 1, 0, 1, OK, ""), 0, 2), timed(hold(1, "b", 1, 0, 1, OK, ""), 0, 3),
			lapse(9, 3, 1, math.MaxInt64, "b"),
			other(1, KindConfirm, "b", 2, 3, Rejected, "hold-expired"), other(0, KindConfirm, "a", 4, 5, OK, ""),
		}, porcupine.Illegal},
		// A hold decided at a time before a deadline the pool's time had
		// already passed: decided back in time.
		{"hold decided before the pool's time", []Op{
			timed(hold(0, "a", 1, 0, 1, OK, ""), 0, 2), lapse(9, 2, 1, 2, "a"),
			timed(hold(1, "b", 1, 3, 4, OK, ""), 1.5, 2),
		}, porcupine.Illegal},
		// A hold decided past a deadline lapses what was due by then, even
		// with no lapse operation in between: its units are free.
		{"a hold's decision time lapses what is due", []Op{
			timed(hold(0, "a", 2, 0, 1, OK, ""), 0, 2), lapse(9, 2, 1, math.MaxInt64, "a"),
			timed(hold(1, "b", 2, 2, 3, OK, ""), 5, 2),
		}, porcupine.Ok},
		{"lapses in deadline order", []Op{
			timed(hold(0, "a", 1, 0, 1, OK, ""), 0, 2), timed(hold(1, "b", 1, 0, 1, OK, ""), 0, 3),
			nth(lapse(9, 3, 1, math.MaxInt64, "b"), 1), lapse(8, 2, 1, math.MaxInt64, "a"),
			read(2, 2, 3, 1, 0), read(2, 4, 5, 0, 0),
		}, porcupine.Ok},
		// The stream says a (due at 2) lapsed, and b (due at 3) lapsed
		// before the read at [2, 3]; a confirm of a then succeeds.
		{"a later deadline lapses first", []Op{
			timed(hold(0, "a", 1, 0, 1, OK, ""), 0, 2), timed(hold(1, "b", 1, 0, 1, OK, ""), 0, 3),
			nth(lapse(9, 3, 1, 2, "b"), 1), lapse(8, 2, 1, math.MaxInt64, "a"),
			other(1, KindConfirm, "a", 3, 4, OK, ""),
		}, porcupine.Illegal},
		{"a lapse before the hold it lapses", []Op{
			lapse(9, 2, 0, 1, "a"), timed(hold(0, "a", 2, 2, 3, OK, ""), 0, 2),
		}, porcupine.Illegal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := make([]porcupine.Operation, len(tt.ops))
			for i, op := range tt.ops {
				ops[i] = porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: op, Return: op.Return}
			}
			if got, _ := porcupine.CheckOperationsVerbose(NewModel(caps), ops, 0); got != tt.want {
				t.Fatalf("check = %s, want %s", got, tt.want)
			}
		})
	}
}

// The stream is checked in the pool's recorded time: the latest time any
// of its events carries.
func TestGroundTruthClock(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	def := StreamEvent{Seq: 1, Pool: "p", Type: capacity.PoolDefinedType, Capacity: 1, At: t0}
	held := func(seq uint64, id string, at time.Time, ttl time.Duration) StreamEvent {
		return StreamEvent{Seq: seq, Pool: "p", Type: capacity.HeldType, ReservationID: id, Quantity: 1, At: at, ExpiresAt: at.Add(ttl)}
	}
	ev := func(seq uint64, typ, id string, at time.Time) StreamEvent {
		return StreamEvent{Seq: seq, Pool: "p", Type: typ, ReservationID: id, At: at}
	}
	// b (clock 90 s behind) holds r1; a (90 s ahead) finds it lapsed and
	// gives its unit to r2; b then confirms r1 in its own time.
	gt := GroundTruthOf([]StreamEvent{
		def, held(2, "r1", t0.Add(-90*time.Second), 3*time.Second),
		held(3, "r2", t0.Add(90*time.Second), 3*time.Second),
		ev(4, capacity.ConfirmedType, "r1", t0.Add(-89*time.Second)),
	})
	if got := gt.MaxUsed["p"]; got != 2 {
		t.Errorf("max used = %d, want 2 (overbooked)", got)
	}
	if len(gt.Errors) != 1 || !strings.Contains(gt.Errors[0], "confirmed r1") {
		t.Errorf("errors = %q, want one about confirming r1 past its deadline", gt.Errors)
	}
	// A hold reused after its deadline, its Expired event written later:
	// never more than the capacity in use.
	gt = GroundTruthOf([]StreamEvent{
		def, held(2, "r1", t0, 3*time.Second), held(3, "r2", t0.Add(4*time.Second), time.Hour),
		ev(4, capacity.ExpiredType, "r1", t0.Add(4*time.Second)),
	})
	if got := gt.MaxUsed["p"]; got != 1 || len(gt.Errors) != 0 || len(gt.Lapses) != 1 {
		t.Errorf("max used = %d, errors %q, lapses %d; want 1, none, 1", got, gt.Errors, len(gt.Lapses))
	}
	// Expired before the deadline.
	gt = GroundTruthOf([]StreamEvent{def, held(2, "r1", t0, 3*time.Second), ev(3, capacity.ExpiredType, "r1", t0.Add(time.Second))})
	if len(gt.Errors) != 1 || !strings.Contains(gt.Errors[0], "before its deadline") {
		t.Errorf("errors = %q, want one about an early expiry", gt.Errors)
	}
}
