package e2e

import (
	"math"
	"testing"

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
