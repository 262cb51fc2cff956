package e2e

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/capacityd/capacityd/capacity"
)

// Bookings are one operation over several pools; these histories need no
// service.
func TestModelBookings(t *testing.T) {
	caps := map[string]int{"a": 2, "b": 2, "c": 5}
	book := func(c int, id string, call, ret int64, out Outcome, problem string, items ...Item) Op {
		return Op{Client: c, Kind: KindBook, Pool: items[0].Pool, ReservationID: id, Items: items, Call: call, Return: ret, Outcome: out, Problem: problem}
	}
	refused := func(op Op, pool string) Op {
		op.ProblemPool = pool
		return op
	}
	bookingOp := func(c int, k Kind, id string, call, ret int64, out Outcome, problem string, items ...Item) Op {
		return Op{Client: c, Kind: k, Pool: items[0].Pool, ReservationID: id, Items: items, Call: call, Return: ret, Outcome: out, Problem: problem}
	}
	item := func(pool string, q int) Item { return Item{Pool: pool, Quantity: q} }
	hold := func(c int, pool, id string, q int, call, ret int64, out Outcome, problem string) Op {
		return Op{Client: c, Kind: KindHold, Pool: pool, ReservationID: id, Quantity: q, Call: call, Return: ret, Outcome: out, Problem: problem}
	}
	read := func(c int, pool string, call, ret int64, held, confirmed int) Op {
		return Op{Client: c, Kind: KindRead, Pool: pool, Call: call, Return: ret, Outcome: OK, Capacity: caps[pool], Held: held, Confirmed: confirmed}
	}
	other := func(c int, k Kind, pool, id string, q int, call, ret int64, out Outcome, problem string) Op {
		return Op{Client: c, Kind: k, Pool: pool, ReservationID: id, Quantity: q, Call: call, Return: ret, Outcome: out, Problem: problem}
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	timed := func(op Op, at, ttl float64) Op {
		op.At, op.ExpiresAt = sec(at), sec(at+ttl)
		return op
	}
	timedBooking := func(op Op, at, ttl float64) Op {
		for i := range op.Items {
			op.Items[i].At = sec(at)
		}
		op.ExpiresAt = sec(at + ttl)
		return op
	}
	lapse := func(c int, pool string, at float64, call, ret int64, ids ...string) Op {
		return Op{Client: c, Kind: KindLapse, Pool: pool, At: sec(at), Lapses: ids, Call: call, Return: ret, Outcome: OK}
	}
	tests := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"booking then reads of both pools", []Op{
			book(0, "k", 0, 1, OK, "", item("a", 1), item("c", 3)), read(1, "a", 2, 3, 1, 0), read(1, "c", 2, 3, 3, 0),
		}, porcupine.Ok},
		{"a booking overbooking one pool", []Op{
			hold(0, "a", "h", 2, 0, 1, OK, ""), book(1, "k", 2, 3, OK, "", item("c", 1), item("a", 1)),
		}, porcupine.Illegal},
		{"refused for capacity although every item fits", []Op{
			hold(0, "a", "h", 1, 0, 1, OK, ""), book(1, "k", 2, 3, Rejected, "insufficient-capacity", item("c", 1), item("a", 1)),
		}, porcupine.Illegal},
		{"refused for capacity, naming the pool short", []Op{
			hold(0, "a", "h", 2, 0, 1, OK, ""),
			refused(book(1, "k", 2, 3, Rejected, "insufficient-capacity", item("c", 1), item("a", 1)), "a"),
			read(2, "c", 4, 5, 0, 0),
		}, porcupine.Ok},
		{"refusal names a pool that fits", []Op{
			hold(0, "a", "h", 2, 0, 1, OK, ""),
			refused(book(1, "k", 2, 3, Rejected, "insufficient-capacity", item("c", 1), item("a", 1)), "c"),
		}, porcupine.Illegal},
		{"refused booking held units in one pool", []Op{
			hold(0, "a", "h", 2, 0, 1, OK, ""),
			book(1, "k", 2, 3, Rejected, "insufficient-capacity", item("c", 1), item("a", 1)),
			read(2, "c", 4, 5, 1, 0),
		}, porcupine.Illegal},
		// Two reads during the booking: the first sees it in a, the second
		// (after the first returned) not in c: never partly booked.
		{"a partial booking visible in reads", []Op{
			book(0, "k", 0, 10, OK, "", item("a", 1), item("c", 1)),
			read(1, "a", 1, 2, 1, 0), read(1, "c", 3, 4, 0, 0),
		}, porcupine.Illegal},
		{"reads on either side of a booking", []Op{
			book(0, "k", 0, 10, OK, "", item("a", 1), item("c", 1)),
			read(1, "c", 1, 2, 0, 0), read(1, "a", 3, 4, 1, 0),
		}, porcupine.Ok},
		{"two bookings race for the last units", []Op{
			book(0, "k1", 0, 10, OK, "", item("a", 2), item("b", 1)),
			book(1, "k2", 1, 9, Rejected, "insufficient-capacity", item("b", 1), item("a", 1)),
			read(2, "b", 11, 12, 1, 0),
		}, porcupine.Ok},
		{"two bookings both granted past capacity", []Op{
			book(0, "k1", 0, 10, OK, "", item("a", 2), item("b", 1)),
			book(1, "k2", 1, 9, OK, "", item("b", 1), item("a", 1)),
		}, porcupine.Illegal},
		{"confirm, extend and release move every part", []Op{
			book(0, "k", 0, 1, OK, "", item("a", 1), item("b", 2)),
			bookingOp(0, KindBookConfirm, "k", 2, 3, OK, "", item("a", 1), item("b", 2)),
			read(1, "b", 4, 5, 0, 2), read(1, "a", 4, 5, 0, 1),
			bookingOp(0, KindBookRelease, "k", 6, 7, OK, "", item("a", 1), item("b", 2)),
			read(1, "b", 8, 9, 0, 0), hold(1, "b", "h", 2, 10, 11, OK, ""),
		}, porcupine.Ok},
		{"single-pool confirm of a booking's part", []Op{
			book(0, "k", 0, 1, OK, "", item("a", 1), item("b", 2)),
			other(0, KindConfirm, "a", "k", 0, 2, 3, OK, ""),
		}, porcupine.Illegal},
		{"single-pool release of a booking's part refused", []Op{
			book(0, "k", 0, 1, OK, "", item("a", 1), item("b", 2)),
			other(0, KindRelease, "a", "k", 0, 2, 3, Rejected, "conflict"),
		}, porcupine.Ok},
		{"booking confirmed after one part lapsed", []Op{
			timedBooking(book(0, "k", 0, 1, OK, "", item("a", 1), item("b", 1)), 0, 2),
			lapse(9, "a", 2, 1, math.MaxInt64, "k"),
			bookingOp(0, KindBookConfirm, "k", 2, 3, Rejected, "hold-expired", item("a", 1), item("b", 1)),
			bookingOp(1, KindBookConfirm, "k", 4, 5, OK, "", item("a", 1), item("b", 1)),
		}, porcupine.Illegal},
		{"booking refused as expired, its parts lapse", []Op{
			timedBooking(book(0, "k", 0, 1, OK, "", item("a", 2), item("b", 1)), 0, 2),
			lapse(9, "a", 2, 1, math.MaxInt64, "k"), lapse(8, "b", 2, 1, math.MaxInt64, "k"),
			bookingOp(0, KindBookConfirm, "k", 2, 3, Rejected, "hold-expired", item("a", 2), item("b", 1)),
			read(1, "a", 4, 5, 0, 0), hold(1, "a", "h", 2, 6, 7, OK, ""),
		}, porcupine.Ok},
		{"extend of a live hold", []Op{
			timed(hold(0, "a", "h", 1, 0, 1, OK, ""), 0, 2),
			timed(other(0, KindExtend, "a", "h", 0, 2, 3, OK, ""), 1, 10),
			read(1, "a", 5, 6, 1, 0), lapse(9, "a", 11, 4, math.MaxInt64, "h"),
			other(0, KindConfirm, "a", "h", 0, 7, 8, Rejected, "hold-expired"),
		}, porcupine.Ok},
		{"extended hold lapses at its old deadline", []Op{
			timed(hold(0, "a", "h", 1, 0, 1, OK, ""), 0, 2),
			timed(other(0, KindExtend, "a", "h", 0, 2, 3, OK, ""), 1, 10),
			timed(hold(1, "a", "g", 2, 4, 5, OK, ""), 3, 10),
		}, porcupine.Illegal},
		{"extend after expiry", []Op{
			timed(hold(0, "a", "h", 1, 0, 1, OK, ""), 0, 2),
			lapse(9, "a", 2, 1, 2, "h"),
			timed(other(0, KindExtend, "a", "h", 0, 3, 4, OK, ""), 3, 10),
		}, porcupine.Illegal},
		{"extend after expiry, refused", []Op{
			timed(hold(0, "a", "h", 1, 0, 1, OK, ""), 0, 2),
			lapse(9, "a", 2, 1, 2, "h"),
			other(0, KindExtend, "a", "h", 0, 3, 4, Rejected, "hold-expired"),
		}, porcupine.Ok},
		{"extend of a confirmed reservation", []Op{
			hold(0, "a", "h", 1, 0, 1, OK, ""), other(0, KindConfirm, "a", "h", 0, 2, 3, OK, ""),
			other(0, KindExtend, "a", "h", 0, 4, 5, OK, ""),
		}, porcupine.Illegal},
		{"partial confirm frees the rest", []Op{
			hold(0, "a", "h", 2, 0, 1, OK, ""), other(0, KindConfirm, "a", "h", 1, 2, 3, OK, ""),
			read(1, "a", 4, 5, 0, 1), hold(1, "a", "g", 1, 6, 7, OK, ""),
			other(0, KindConfirm, "a", "h", 0, 8, 9, OK, ""), // a repeat
			other(0, KindConfirm, "a", "h", 2, 10, 11, Rejected, "conflict"),
		}, porcupine.Ok},
		{"partial confirm keeps every unit", []Op{
			hold(0, "a", "h", 2, 0, 1, OK, ""), other(0, KindConfirm, "a", "h", 1, 2, 3, OK, ""),
			read(1, "a", 4, 5, 0, 2),
		}, porcupine.Illegal},
		{"partial confirm repeated with other units", []Op{
			hold(0, "a", "h", 2, 0, 1, OK, ""), other(0, KindConfirm, "a", "h", 1, 2, 3, OK, ""),
			other(0, KindConfirm, "a", "h", 2, 4, 5, OK, ""),
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

// Bookings link pools into one partition; other pools stay apart.
func TestPartitionByGroup(t *testing.T) {
	op := func(pools ...string) porcupine.Operation {
		o := Op{Kind: KindHold, Pool: pools[0]}
		if len(pools) > 1 {
			o.Kind = KindBook
			for _, p := range pools {
				o.Items = append(o.Items, Item{Pool: p, Quantity: 1})
			}
		}
		return porcupine.Operation{Input: o, Output: o}
	}
	parts := partitionByGroup([]porcupine.Operation{op("d"), op("a"), op("b", "c"), op("e"), op("c", "a"), op("b"), op("e")})
	var got []string
	for _, p := range parts {
		got = append(got, groupName(p))
	}
	if want := []string{"a+b+c", "d", "e"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("groups = %v, want %v", got, want)
	}
	if n := len(parts[0]); n != 4 {
		t.Fatalf("group a+b+c has %d ops, want 4", n)
	}
}

// A booking is in all its pools or in none.
func TestGroundTruthPartialBooking(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	items := []Item{{Pool: "a", Quantity: 1}, {Pool: "b", Quantity: 2}}
	held := func(seq uint64, pool string, q int) StreamEvent {
		return StreamEvent{Seq: seq, Pool: pool, Type: capacity.HeldType, ReservationID: "k", Booking: "k", Items: items, Quantity: q, At: t0, ExpiresAt: t0.Add(time.Hour)}
	}
	defs := []StreamEvent{
		{Seq: 1, Pool: "a", Type: capacity.PoolDefinedType, Capacity: 5, At: t0},
		{Seq: 2, Pool: "b", Type: capacity.PoolDefinedType, Capacity: 5, At: t0},
	}
	whole := GroundTruthOf(append(append([]StreamEvent{}, defs...), held(3, "a", 1), held(4, "b", 2)))
	if len(whole.PartialBookings) != 0 || len(whole.Errors) != 0 {
		t.Fatalf("whole booking: partial %q, errors %q", whole.PartialBookings, whole.Errors)
	}
	part := GroundTruthOf(append(append([]StreamEvent{}, defs...), held(3, "a", 1)))
	if len(part.PartialBookings) != 1 {
		t.Fatalf("booking held in a only: partial %q, want one", part.PartialBookings)
	}
	confirmedInOne := GroundTruthOf(append(append([]StreamEvent{}, defs...), held(3, "a", 1), held(4, "b", 2),
		StreamEvent{Seq: 5, Pool: "b", Type: capacity.ConfirmedType, ReservationID: "k", Booking: "k", At: t0}))
	if len(confirmedInOne.PartialBookings) != 1 {
		t.Fatalf("booking confirmed in b only: partial %q, want one", confirmedInOne.PartialBookings)
	}
	r := &Result{}
	op := Op{Kind: KindBook, Pool: "a", ReservationID: "k", Items: items, Outcome: Unknown}
	if in, partial := r.resolve(&op, part); in || partial == "" {
		t.Fatalf("resolve of a partial booking = %v, %q; want not in the stream, partial", in, partial)
	}
}
