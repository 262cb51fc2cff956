package e2e

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/capacityd/capacityd/capacity"
)

// A takeover's check takes out the window and nothing more: these
// histories need no service. Pool p holds 2 units; a wrote seq 1 (the
// definition) to 3, b took over at the recovery point 2.
func TestTakeoverSplit(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	defined := StreamEvent{Seq: 1, Pool: "p", Type: capacity.PoolDefinedType, Capacity: 2, At: t0}
	held := func(seq uint64, id string) StreamEvent {
		return StreamEvent{Seq: seq, Pool: "p", Type: capacity.HeldType, ReservationID: id, Quantity: 1, At: t0.Add(time.Duration(seq) * time.Second)}
	}
	const old, recoveryPoint = 0, 2 // client 0 spoke to a, client 1 to b
	hold := func(c int, id string, call, ret int64, out Outcome, version uint64) Op {
		op := Op{Client: c, Kind: KindHold, Pool: "p", ReservationID: id, Quantity: 1, Call: call, Return: ret, Outcome: out, Version: version}
		if out == Rejected {
			op.Problem, op.Version = "insufficient-capacity", 0
		}
		return op
	}
	read := func(c int, call, ret int64, n int, version uint64) Op {
		return Op{Client: c, Kind: KindRead, Pool: "p", Call: call, Return: ret, Outcome: OK, Capacity: 2, Held: n, Version: version}
	}
	aStream := []StreamEvent{defined, held(2, "a1"), held(3, "a2")}
	tests := []struct {
		name    string
		ops     []Op
		bStream []StreamEvent
		window  int
		fails   bool
	}{
		{"window left out", []Op{
			hold(old, "a1", 0, 1, OK, 2), hold(old, "a2", 2, 3, OK, 3), read(old, 4, 5, 2, 3),
			hold(old, "a3", 6, 7, Rejected, 0), // a was full with its tail: b is not
			hold(1, "b1", 10, 11, OK, 3), read(1, 12, 13, 2, 3), hold(1, "b2", 14, 15, Rejected, 0),
		}, []StreamEvent{defined, held(2, "a1"), held(3, "b1")}, 1, false},
		{"b overbooks", []Op{
			hold(old, "a1", 0, 1, OK, 2), hold(old, "a2", 2, 3, OK, 3),
			hold(1, "b1", 10, 11, OK, 3), hold(1, "b2", 14, 15, OK, 4),
		}, []StreamEvent{defined, held(2, "a1"), held(3, "b1"), held(4, "b2"), held(5, "b3")}, 1, true},
		{"b refuses what fits", []Op{
			hold(old, "a1", 0, 1, OK, 2), hold(old, "a2", 2, 3, OK, 3),
			hold(1, "b1", 10, 11, Rejected, 0),
		}, []StreamEvent{defined, held(2, "a1")}, 1, true},
		{"b loses an ack", []Op{
			hold(old, "a1", 0, 1, OK, 2), hold(1, "b1", 10, 11, OK, 3),
		}, []StreamEvent{defined, held(2, "a1")}, 0, true},
		{"the mirror loses an ack before the recovery point", []Op{
			hold(old, "a1", 0, 1, OK, 2), hold(old, "a2", 2, 3, OK, 3),
		}, []StreamEvent{defined}, 1, true},
		{"an ack past the recovery point a never stored", []Op{
			hold(old, "a1", 0, 1, OK, 2), hold(old, "a4", 2, 3, OK, 4),
		}, []StreamEvent{defined, held(2, "a1")}, 0, true},
		{"a refuses what fits before its tail", []Op{
			hold(old, "a0", 0, 1, Rejected, 0), hold(old, "a1", 2, 3, OK, 2), hold(old, "a2", 4, 5, OK, 3),
		}, []StreamEvent{defined, held(2, "a1")}, 1, true},
		{"a read before the recovery point is checked", []Op{
			hold(old, "a1", 0, 1, OK, 2), read(old, 2, 3, 0, 2), hold(old, "a2", 4, 5, OK, 3),
		}, []StreamEvent{defined, held(2, "a1")}, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			split := SplitTakeover(tc.ops, func(op Op) bool { return op.Client == old }, recoveryPoint, aStream)
			if got := len(split.Window); got != tc.window {
				t.Errorf("window = %d, want %d (%s)", got, tc.window, split.Figures())
			}
			gt := GroundTruthOf(tc.bStream)
			final := []PoolDoc{{ID: "p", Capacity: 2, Held: gt.Final["p"].Held}}
			res := Check(split.Ops, map[string]int{"p": 2}, gt, final, 10*time.Second)
			t.Logf("%s; %s; lost %d, overbooked %d", split.Figures(), res.Figures(), len(res.Lost), len(res.Overbooked))
			if res.Failed() != tc.fails {
				t.Errorf("failed = %v, want %v: %s (lost %v, overbooked %v)", res.Failed(), tc.fails, res.Figures(), res.Lost, res.Overbooked)
			}
			if !tc.fails && res.Check != porcupine.Ok {
				t.Errorf("check = %s", res.Check)
			}
		})
	}
}
