package capacity_test

import (
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

func TestDecide(t *testing.T) {
	def := slot()
	other := func(change func(*capacity.DefinePool)) capacity.DefinePool {
		d := slot()
		change(&d)
		return d
	}
	overbooked := other(func(d *capacity.DefinePool) { d.Overbook = 2 })
	closeIt := capacity.ChangePool{Status: capacity.Closed}
	defined := now(def)
	held := now(hold("r1", 3, 5*time.Minute))
	heldAt := func(after time.Duration, id string, q int, ttl time.Duration) capacity.Held {
		return capacity.Held{ReservationID: id, Quantity: q, TTL: ttl, ExpiresAt: t0.Add(after + ttl), At: t0.Add(after)}
	}

	tests := []struct {
		name  string
		given []step
		cmd   capacity.Command
		after time.Duration // the command is decided at t0+after
		want  []capacity.Event
		code  string
	}{
		// DefinePool
		{name: "define new", cmd: def, want: []capacity.Event{capacity.PoolDefined{
			Pool: def.Pool, Region: "ams", Kind: "delivery", StartsAt: def.StartsAt, EndsAt: def.EndsAt,
			Capacity: 10, DefinedAt: t0,
		}}},
		{name: "define new with overbook", cmd: overbooked, want: []capacity.Event{capacity.PoolDefined{
			Pool: def.Pool, Region: "ams", Kind: "delivery", StartsAt: def.StartsAt, EndsAt: def.EndsAt,
			Capacity: 10, Overbook: 2, DefinedAt: t0,
		}}},
		{name: "define new stores the window in UTC", cmd: other(func(d *capacity.DefinePool) {
			d.StartsAt = d.StartsAt.In(time.FixedZone("CEST", 2*3600))
			d.EndsAt = d.EndsAt.In(time.FixedZone("CEST", 2*3600))
		}), want: []capacity.Event{capacity.PoolDefined{
			Pool: def.Pool, Region: "ams", Kind: "delivery", StartsAt: def.StartsAt, EndsAt: def.EndsAt,
			Capacity: 10, DefinedAt: t0,
		}}},
		{name: "define zero capacity", cmd: other(func(d *capacity.DefinePool) { d.Capacity = 0 }), want: []capacity.Event{capacity.PoolDefined{
			Pool: def.Pool, Region: "ams", Kind: "delivery", StartsAt: def.StartsAt, EndsAt: def.EndsAt, DefinedAt: t0,
		}}},
		{name: "define identical repeat", given: []step{defined}, cmd: def, after: time.Hour},
		{name: "define identical repeat in another zone", given: []step{defined}, cmd: other(func(d *capacity.DefinePool) {
			d.StartsAt = d.StartsAt.In(time.FixedZone("CEST", 2*3600))
		})},
		{name: "define identical repeat after capacity change", given: []step{defined, now(capacity.ChangePool{Capacity: ptr(20)})}, cmd: def},
		{name: "define other capacity", given: []step{defined}, cmd: other(func(d *capacity.DefinePool) { d.Capacity = 11 }), code: capacity.ECONFLICT},
		{name: "define other overbook", given: []step{defined}, cmd: overbooked, code: capacity.ECONFLICT},
		{name: "define other region", given: []step{defined}, cmd: other(func(d *capacity.DefinePool) { d.Region = "rtm" }), code: capacity.ECONFLICT},
		{name: "define other kind", given: []step{defined}, cmd: other(func(d *capacity.DefinePool) { d.Kind = "picking" }), code: capacity.ECONFLICT},
		{name: "define other start", given: []step{defined}, cmd: other(func(d *capacity.DefinePool) { d.StartsAt = d.StartsAt.Add(time.Second) }), code: capacity.ECONFLICT},
		{name: "define other end", given: []step{defined}, cmd: other(func(d *capacity.DefinePool) { d.EndsAt = d.EndsAt.Add(time.Second) }), code: capacity.ECONFLICT},
		{name: "define invalid: empty pool id", cmd: other(func(d *capacity.DefinePool) { d.Pool = "" }), code: capacity.EINVALID},
		{name: "define invalid: pool id with a dot", cmd: other(func(d *capacity.DefinePool) { d.Pool = "ams.1800" }), code: capacity.EINVALID},
		{name: "define invalid: pool id too long", cmd: other(func(d *capacity.DefinePool) { d.Pool = longID(65) }), code: capacity.EINVALID},
		{name: "define valid: pool id of 64", cmd: other(func(d *capacity.DefinePool) { d.Pool = longID(64) }), want: []capacity.Event{capacity.PoolDefined{
			Pool: longID(64), Region: "ams", Kind: "delivery", StartsAt: def.StartsAt, EndsAt: def.EndsAt, Capacity: 10, DefinedAt: t0,
		}}},
		{name: "define invalid: empty region", cmd: other(func(d *capacity.DefinePool) { d.Region = "" }), code: capacity.EINVALID},
		{name: "define invalid: region with a space", cmd: other(func(d *capacity.DefinePool) { d.Region = "am s" }), code: capacity.EINVALID},
		{name: "define invalid: empty kind", cmd: other(func(d *capacity.DefinePool) { d.Kind = "" }), code: capacity.EINVALID},
		{name: "define invalid: kind not ascii", cmd: other(func(d *capacity.DefinePool) { d.Kind = "lieferung-ä" }), code: capacity.EINVALID},
		{name: "define invalid: no start", cmd: other(func(d *capacity.DefinePool) { d.StartsAt = time.Time{} }), code: capacity.EINVALID},
		{name: "define invalid: no end", cmd: other(func(d *capacity.DefinePool) { d.EndsAt = time.Time{} }), code: capacity.EINVALID},
		{name: "define invalid: empty window", cmd: other(func(d *capacity.DefinePool) { d.EndsAt = d.StartsAt }), code: capacity.EINVALID},
		{name: "define invalid: window backwards", cmd: other(func(d *capacity.DefinePool) { d.EndsAt = d.StartsAt.Add(-time.Hour) }), code: capacity.EINVALID},
		{name: "define invalid: negative capacity", cmd: other(func(d *capacity.DefinePool) { d.Capacity = -1 }), code: capacity.EINVALID},
		{name: "define invalid: capacity too big", cmd: other(func(d *capacity.DefinePool) { d.Capacity = capacity.MaxCapacity + 1 }), code: capacity.EINVALID},
		{name: "define invalid: negative overbook", cmd: other(func(d *capacity.DefinePool) { d.Overbook = -1 }), code: capacity.EINVALID},
		{name: "define invalid: overbook too big", cmd: other(func(d *capacity.DefinePool) { d.Overbook = capacity.MaxCapacity + 1 }), code: capacity.EINVALID},
		{name: "define invalid even when defined", given: []step{defined}, cmd: other(func(d *capacity.DefinePool) { d.Pool = "" }), code: capacity.EINVALID},

		// ChangePool
		{name: "change capacity up", given: []step{defined}, cmd: capacity.ChangePool{Capacity: ptr(20)}, after: time.Minute,
			want: []capacity.Event{capacity.CapacityChanged{From: 10, To: 20, At: t0.Add(time.Minute)}}},
		{name: "change capacity down", given: []step{defined}, cmd: capacity.ChangePool{Capacity: ptr(0)},
			want: []capacity.Event{capacity.CapacityChanged{From: 10, To: 0, At: t0}}},
		{name: "change capacity to the same", given: []step{defined}, cmd: capacity.ChangePool{Capacity: ptr(10)}},
		{name: "change capacity below booked", given: []step{defined, now(hold("r1", 8, time.Hour))}, cmd: capacity.ChangePool{Capacity: ptr(5)},
			want: []capacity.Event{capacity.CapacityChanged{From: 10, To: 5, At: t0}}},
		{name: "close", given: []step{defined}, cmd: closeIt, want: []capacity.Event{capacity.PoolClosed{At: t0}}},
		{name: "close closed", given: []step{defined, now(closeIt)}, cmd: closeIt},
		{name: "reopen", given: []step{defined, now(closeIt)}, cmd: capacity.ChangePool{Status: capacity.Open},
			want: []capacity.Event{capacity.PoolReopened{At: t0}}},
		{name: "reopen open", given: []step{defined}, cmd: capacity.ChangePool{Status: capacity.Open}},
		{name: "close after the window", given: []step{defined}, cmd: closeIt, after: 12 * time.Hour,
			want: []capacity.Event{capacity.PoolClosed{At: t0.Add(12 * time.Hour)}}},
		{name: "change capacity and close at once", given: []step{defined}, cmd: capacity.ChangePool{Capacity: ptr(12), Status: capacity.Closed},
			want: []capacity.Event{capacity.CapacityChanged{From: 10, To: 12, At: t0}, capacity.PoolClosed{At: t0}}},
		{name: "change capacity and reopen at once", given: []step{defined, now(closeIt)}, cmd: capacity.ChangePool{Capacity: ptr(12), Status: capacity.Open},
			want: []capacity.Event{capacity.CapacityChanged{From: 10, To: 12, At: t0}, capacity.PoolReopened{At: t0}}},
		{name: "change both, capacity a no-op", given: []step{defined}, cmd: capacity.ChangePool{Capacity: ptr(10), Status: capacity.Closed},
			want: []capacity.Event{capacity.PoolClosed{At: t0}}},
		{name: "change if version matches", given: []step{defined, held}, cmd: capacity.ChangePool{Capacity: ptr(11), IfVersion: ptr[uint64](2)},
			want: []capacity.Event{capacity.CapacityChanged{From: 10, To: 11, At: t0}}},
		{name: "change if version is stale", given: []step{defined, held}, cmd: capacity.ChangePool{Capacity: ptr(11), IfVersion: ptr[uint64](1)}, code: capacity.EPRECONDITION},
		{name: "change if version is ahead", given: []step{defined}, cmd: capacity.ChangePool{Status: capacity.Closed, IfVersion: ptr[uint64](2)}, code: capacity.EPRECONDITION},
		{name: "no-op change if version is stale", given: []step{defined, held}, cmd: capacity.ChangePool{Capacity: ptr(10), IfVersion: ptr[uint64](1)}, code: capacity.EPRECONDITION},
		{name: "change invalid: nothing", given: []step{defined}, cmd: capacity.ChangePool{}, code: capacity.EINVALID},
		{name: "change invalid: only if version", given: []step{defined}, cmd: capacity.ChangePool{IfVersion: ptr[uint64](1)}, code: capacity.EINVALID},
		{name: "change invalid: status", given: []step{defined}, cmd: capacity.ChangePool{Status: "paused"}, code: capacity.EINVALID},
		{name: "change invalid: negative capacity", given: []step{defined}, cmd: capacity.ChangePool{Capacity: ptr(-1)}, code: capacity.EINVALID},
		{name: "change invalid: capacity too big", given: []step{defined}, cmd: capacity.ChangePool{Capacity: ptr(capacity.MaxCapacity + 1)}, code: capacity.EINVALID},
		{name: "change undefined pool", cmd: capacity.ChangePool{Capacity: ptr(3)}, code: capacity.ENOTFOUND},
		{name: "change overbook", given: []step{defined}, cmd: capacity.ChangePool{Overbook: ptr(4)},
			want: []capacity.Event{capacity.OverbookChanged{From: 0, To: 4, At: t0}}},
		{name: "change overbook to the same", given: []step{defined}, cmd: capacity.ChangePool{Overbook: ptr(0)}},
		{name: "change capacity, overbook and status at once", given: []step{defined}, cmd: capacity.ChangePool{Capacity: ptr(8), Overbook: ptr(2), Status: capacity.Closed},
			want: []capacity.Event{capacity.CapacityChanged{From: 10, To: 8, At: t0}, capacity.OverbookChanged{From: 0, To: 2, At: t0}, capacity.PoolClosed{At: t0}}},
		{name: "change invalid: negative overbook", given: []step{defined}, cmd: capacity.ChangePool{Overbook: ptr(-1)}, code: capacity.EINVALID},
		{name: "change invalid: overbook too big", given: []step{defined}, cmd: capacity.ChangePool{Overbook: ptr(capacity.MaxCapacity + 1)}, code: capacity.EINVALID},
		{name: "hold fits the raised overbook", given: []step{defined, now(hold("r1", 10, time.Hour)), now(capacity.ChangePool{Overbook: ptr(2)})}, cmd: hold("r2", 2, time.Hour),
			want: []capacity.Event{heldAt(0, "r2", 2, time.Hour)}},
		{name: "hold refused past the cut overbook", given: []step{defined, now(capacity.ChangePool{Overbook: ptr(2)}), now(hold("r1", 11, time.Hour)), now(capacity.ChangePool{Overbook: ptr(1)})}, cmd: hold("r2", 1, time.Hour),
			code: capacity.EINSUFFICIENT},
		{name: "define identical repeat after overbook change", given: []step{defined, now(capacity.ChangePool{Overbook: ptr(3)})}, cmd: def},

		// Hold
		{name: "hold fits", given: []step{defined}, cmd: hold("r1", 3, 5*time.Minute), after: time.Second,
			want: []capacity.Event{heldAt(time.Second, "r1", 3, 5*time.Minute)}},
		{name: "hold exactly fills", given: []step{defined, now(hold("r1", 7, time.Hour))}, cmd: hold("r2", 3, time.Hour),
			want: []capacity.Event{heldAt(0, "r2", 3, time.Hour)}},
		{name: "hold one over", given: []step{defined, now(hold("r1", 7, time.Hour))}, cmd: hold("r2", 4, time.Hour), code: capacity.EINSUFFICIENT},
		{name: "hold one over confirmed", given: []step{defined, now(hold("r1", 7, time.Hour)), now(capacity.Confirm{ReservationID: "r1"})},
			cmd: hold("r2", 4, time.Hour), code: capacity.EINSUFFICIENT},
		{name: "hold in released units", given: []step{defined, now(hold("r1", 10, time.Hour)), now(capacity.Release{ReservationID: "r1"})},
			cmd: hold("r2", 10, time.Hour), want: []capacity.Event{heldAt(0, "r2", 10, time.Hour)}},
		{name: "hold in units of a released booking", given: []step{defined, now(hold("r1", 10, time.Hour)), now(capacity.Confirm{ReservationID: "r1"}), now(capacity.Release{ReservationID: "r1"})},
			cmd: hold("r2", 10, time.Hour), want: []capacity.Event{heldAt(0, "r2", 10, time.Hour)}},
		{name: "hold in lapsed units", given: []step{defined, now(hold("r1", 10, time.Minute))}, cmd: hold("r2", 10, time.Hour), after: time.Minute,
			want: []capacity.Event{heldAt(time.Minute, "r2", 10, time.Hour)}},
		{name: "hold a nanosecond before a lapse", given: []step{defined, now(hold("r1", 10, time.Minute))}, cmd: hold("r2", 1, time.Hour), after: time.Minute - 1,
			code: capacity.EINSUFFICIENT},
		{name: "hold in overbook allowance", given: []step{now(overbooked), now(hold("r1", 10, time.Hour))}, cmd: hold("r2", 2, time.Hour),
			want: []capacity.Event{heldAt(0, "r2", 2, time.Hour)}},
		{name: "hold past overbook allowance", given: []step{now(overbooked), now(hold("r1", 10, time.Hour))}, cmd: hold("r2", 3, time.Hour), code: capacity.EINSUFFICIENT},
		{name: "hold on zero capacity", given: []step{defined, now(capacity.ChangePool{Capacity: ptr(0)})}, cmd: hold("r1", 1, time.Hour), code: capacity.EINSUFFICIENT},
		{name: "hold of the biggest quantity", given: []step{defined}, cmd: hold("r1", capacity.MaxQuantity, time.Hour), code: capacity.EINSUFFICIENT},
		{name: "hold on closed pool", given: []step{defined, now(closeIt)}, cmd: hold("r1", 1, time.Hour), code: capacity.ECLOSED},
		{name: "hold on reopened pool", given: []step{defined, now(closeIt), now(capacity.ChangePool{Status: capacity.Open})}, cmd: hold("r1", 1, time.Hour),
			want: []capacity.Event{heldAt(0, "r1", 1, time.Hour)}},
		{name: "hold when the window has ended", given: []step{defined}, cmd: hold("r1", 1, time.Hour), after: 11 * time.Hour, code: capacity.ECLOSED},
		{name: "hold just before the window ends", given: []step{defined}, cmd: hold("r1", 1, time.Hour), after: 11*time.Hour - 1,
			want: []capacity.Event{heldAt(11*time.Hour-1, "r1", 1, time.Hour)}},
		{name: "hold during the window", given: []step{defined}, cmd: hold("r1", 1, time.Hour), after: 10*time.Hour + time.Minute,
			want: []capacity.Event{heldAt(10*time.Hour+time.Minute, "r1", 1, time.Hour)}},
		{name: "hold again", given: []step{defined, held}, cmd: hold("r1", 3, 5*time.Minute), after: time.Minute},
		{name: "hold again when full", given: []step{defined, now(hold("r1", 10, time.Hour))}, cmd: hold("r1", 10, time.Hour)},
		{name: "hold again after confirm", given: []step{defined, held, now(capacity.Confirm{ReservationID: "r1"})}, cmd: hold("r1", 3, 5*time.Minute)},
		{name: "hold again after release", given: []step{defined, held, now(capacity.Release{ReservationID: "r1"})}, cmd: hold("r1", 3, 5*time.Minute)},
		{name: "hold again after lapse", given: []step{defined, held}, cmd: hold("r1", 3, 5*time.Minute), after: time.Hour},
		{name: "hold again after expiry", given: []step{defined, held, at(time.Hour, capacity.Expire{})}, cmd: hold("r1", 3, 5*time.Minute), after: time.Hour},
		{name: "hold again on closed pool", given: []step{defined, held, now(closeIt)}, cmd: hold("r1", 3, 5*time.Minute)},
		{name: "hold again after the window", given: []step{defined, held}, cmd: hold("r1", 3, 5*time.Minute), after: 12 * time.Hour},
		{name: "hold again with other quantity", given: []step{defined, held}, cmd: hold("r1", 4, 5*time.Minute), code: capacity.ECONFLICT},
		{name: "hold again with other ttl", given: []step{defined, held}, cmd: hold("r1", 3, 6*time.Minute), code: capacity.ECONFLICT},
		{name: "hold again with other quantity after release", given: []step{defined, held, now(capacity.Release{ReservationID: "r1"})}, cmd: hold("r1", 2, 5*time.Minute), code: capacity.ECONFLICT},
		{name: "hold invalid: quantity 0", given: []step{defined}, cmd: hold("r1", 0, time.Hour), code: capacity.EINVALID},
		{name: "hold invalid: quantity -1", given: []step{defined}, cmd: hold("r1", -1, time.Hour), code: capacity.EINVALID},
		{name: "hold invalid: quantity too big", given: []step{defined}, cmd: hold("r1", capacity.MaxQuantity+1, time.Hour), code: capacity.EINVALID},
		{name: "hold invalid: no ttl", given: []step{defined}, cmd: hold("r1", 1, 0), code: capacity.EINVALID},
		{name: "hold invalid: ttl too short", given: []step{defined}, cmd: hold("r1", 1, capacity.MinTTL-1), code: capacity.EINVALID},
		{name: "hold invalid: ttl too long", given: []step{defined}, cmd: hold("r1", 1, capacity.MaxTTL+1), code: capacity.EINVALID},
		{name: "hold shortest ttl", given: []step{defined}, cmd: hold("r1", 1, capacity.MinTTL), want: []capacity.Event{heldAt(0, "r1", 1, capacity.MinTTL)}},
		{name: "hold longest ttl", given: []step{defined}, cmd: hold("r1", 1, capacity.MaxTTL), want: []capacity.Event{heldAt(0, "r1", 1, capacity.MaxTTL)}},
		{name: "hold invalid: empty id", given: []step{defined}, cmd: hold("", 1, time.Hour), code: capacity.EINVALID},
		{name: "hold invalid: id with a slash", given: []step{defined}, cmd: hold("r/1", 1, time.Hour), code: capacity.EINVALID},
		{name: "hold invalid: id too long", given: []step{defined}, cmd: hold(longID(65), 1, time.Hour), code: capacity.EINVALID},
		{name: "hold invalid on undefined pool", cmd: hold("r1", 0, time.Hour), code: capacity.EINVALID},
		{name: "hold on undefined pool", cmd: hold("r1", 1, time.Hour), code: capacity.ENOTFOUND},

		// Confirm
		{name: "confirm live hold", given: []step{defined, held}, cmd: capacity.Confirm{ReservationID: "r1"}, after: 5*time.Minute - 1,
			want: []capacity.Event{capacity.Confirmed{ReservationID: "r1", At: t0.Add(5*time.Minute - 1)}}},
		{name: "confirm on closed pool", given: []step{defined, held, now(closeIt)}, cmd: capacity.Confirm{ReservationID: "r1"},
			want: []capacity.Event{capacity.Confirmed{ReservationID: "r1", At: t0}}},
		{name: "confirm twice", given: []step{defined, held, now(capacity.Confirm{ReservationID: "r1"})}, cmd: capacity.Confirm{ReservationID: "r1"}, after: time.Hour},
		{name: "confirm at the deadline", given: []step{defined, held}, cmd: capacity.Confirm{ReservationID: "r1"}, after: 5 * time.Minute, code: capacity.EEXPIRED},
		{name: "confirm lapsed hold", given: []step{defined, held}, cmd: capacity.Confirm{ReservationID: "r1"}, after: time.Hour, code: capacity.EEXPIRED},
		{name: "confirm expired hold", given: []step{defined, held, at(time.Hour, capacity.Expire{})}, cmd: capacity.Confirm{ReservationID: "r1"}, after: time.Hour, code: capacity.EEXPIRED},
		{name: "confirm released hold", given: []step{defined, held, now(capacity.Release{ReservationID: "r1"})}, cmd: capacity.Confirm{ReservationID: "r1"}, code: capacity.ECONFLICT},
		{name: "confirm unknown", given: []step{defined, held}, cmd: capacity.Confirm{ReservationID: "r2"}, code: capacity.ENOTFOUND},
		{name: "confirm invalid id", given: []step{defined, held}, cmd: capacity.Confirm{ReservationID: "r 1"}, code: capacity.EINVALID},
		{name: "confirm on undefined pool", cmd: capacity.Confirm{ReservationID: "r1"}, code: capacity.ENOTFOUND},

		// Release
		{name: "release held", given: []step{defined, held}, cmd: capacity.Release{ReservationID: "r1"},
			want: []capacity.Event{capacity.Released{ReservationID: "r1", At: t0}}},
		{name: "release confirmed", given: []step{defined, held, now(capacity.Confirm{ReservationID: "r1"})}, cmd: capacity.Release{ReservationID: "r1"}, after: time.Hour,
			want: []capacity.Event{capacity.Released{ReservationID: "r1", At: t0.Add(time.Hour)}}},
		{name: "release twice", given: []step{defined, held, now(capacity.Release{ReservationID: "r1"})}, cmd: capacity.Release{ReservationID: "r1"}},
		{name: "release lapsed hold", given: []step{defined, held}, cmd: capacity.Release{ReservationID: "r1"}, after: 5 * time.Minute},
		{name: "release expired hold", given: []step{defined, held, at(time.Hour, capacity.Expire{})}, cmd: capacity.Release{ReservationID: "r1"}, after: time.Hour},
		{name: "release unknown", given: []step{defined, held}, cmd: capacity.Release{ReservationID: "r2"}, code: capacity.ENOTFOUND},
		{name: "release invalid id", given: []step{defined}, cmd: capacity.Release{ReservationID: ""}, code: capacity.EINVALID},
		{name: "release on undefined pool", cmd: capacity.Release{ReservationID: "r1"}, code: capacity.ENOTFOUND},

		// Expire
		{name: "expire only lapsed holds", given: []step{
			defined,
			now(hold("lapsed", 1, time.Minute)),
			now(hold("live", 1, time.Hour)),
			now(hold("confirmed", 1, time.Minute)), now(capacity.Confirm{ReservationID: "confirmed"}),
			now(hold("released", 1, time.Minute)), now(capacity.Release{ReservationID: "released"}),
			at(time.Minute, hold("at-deadline", 1, time.Minute)),
		}, cmd: capacity.Expire{}, after: 2 * time.Minute,
			want: []capacity.Event{
				capacity.Expired{ReservationID: "at-deadline", At: t0.Add(2 * time.Minute)},
				capacity.Expired{ReservationID: "lapsed", At: t0.Add(2 * time.Minute)},
			}},
		{name: "expire in id order", given: []step{defined, now(hold("c", 1, time.Minute)), now(hold("a", 1, time.Minute)), now(hold("b", 1, time.Minute))},
			cmd: capacity.Expire{}, after: time.Hour, want: []capacity.Event{
				capacity.Expired{ReservationID: "a", At: t0.Add(time.Hour)},
				capacity.Expired{ReservationID: "b", At: t0.Add(time.Hour)},
				capacity.Expired{ReservationID: "c", At: t0.Add(time.Hour)},
			}},
		{name: "expire none lapsed", given: []step{defined, held}, cmd: capacity.Expire{}, after: 5*time.Minute - 1},
		{name: "expire already expired", given: []step{defined, held, at(time.Hour, capacity.Expire{})}, cmd: capacity.Expire{}, after: 2 * time.Hour},
		{name: "expire empty pool", given: []step{defined}, cmd: capacity.Expire{}},
		{name: "expire undefined pool", cmd: capacity.Expire{}},

		// Read
		{name: "read", given: []step{defined, held}, cmd: capacity.Read{}},
		{name: "read undefined pool", cmd: capacity.Read{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := given(t, tt.given...)
			before, err := p.MarshalSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			events, err := capacity.Decide(p, tt.cmd, t0.Add(tt.after))
			if got, want := capacity.ErrorCode(err), tt.code; got != want {
				t.Fatalf("code = %q (%v), want %q", got, err, want)
			}
			if err != nil && capacity.ErrorMessage(err) == "" {
				t.Fatalf("refusal %v has no message", err)
			}
			requireEqual(t, "events", events, tt.want)
			after, err := p.MarshalSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(after), string(before); got != want {
				t.Fatalf("Decide changed the pool:\n%s\nwas\n%s", got, want)
			}
		})
	}
}

// A planner may cut capacity below what is booked: bookings stay, the pool
// reads as over capacity and refuses holds until enough is given back.
func TestCapacityCutBelowBooked(t *testing.T) {
	p := given(t, now(slot()), now(hold("r1", 4, time.Hour)), now(hold("r2", 4, time.Minute)),
		now(capacity.Confirm{ReservationID: "r1"}), now(capacity.ChangePool{Capacity: ptr(5)}))

	requireEqual(t, "figures", p.FiguresAt(t0), capacity.Figures{Held: 4, Confirmed: 4, Available: -3, OverCapacity: true})
	mustRefuse(t, p, hold("r3", 1, time.Hour), t0, capacity.EINSUFFICIENT)

	// r2 lapses: 4 confirmed of 5, one unit free.
	requireEqual(t, "figures after lapse", p.FiguresAt(t0.Add(time.Minute)), capacity.Figures{Held: 0, Confirmed: 4, Available: 1})
	mustRefuse(t, p, hold("r3", 2, time.Hour), t0.Add(time.Minute), capacity.EINSUFFICIENT)
	mustDo(t, p, hold("r3", 1, time.Hour), t0.Add(time.Minute))
	requireEqual(t, "figures when full", p.FiguresAt(t0.Add(time.Minute)), capacity.Figures{Held: 1, Confirmed: 4, Available: 0})
}

// Available is what a hold can still take: it counts the overbook
// allowance, and is never negative unless capacity was cut.
func TestFiguresWithOverbook(t *testing.T) {
	d := slot()
	d.Overbook = 2
	p := given(t, now(d), now(hold("r1", 11, time.Hour)))
	requireEqual(t, "figures", p.FiguresAt(t0), capacity.Figures{Held: 11, Available: 1})
	mustDo(t, p, hold("r2", 1, time.Hour), t0)
	requireEqual(t, "figures when full", p.FiguresAt(t0), capacity.Figures{Held: 12, Available: 0})
	mustRefuse(t, p, hold("r3", 1, time.Hour), t0, capacity.EINSUFFICIENT)
}

// Two planners who both saw version v send If-Match v in one group-commit
// batch: the second must be refused although the first is not stamped yet.
func TestIfVersionWithinBatch(t *testing.T) {
	p := given(t, now(slot()))
	v := p.Version
	first, err := capacity.Decide(p, capacity.ChangePool{Capacity: ptr(20), IfVersion: &v}, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range first {
		p.Evolve(e, 0)
	}
	if got, want := p.Version, v; got != want {
		t.Fatalf("version before stamping = %d, want %d", got, want)
	}
	mustRefuse(t, p, capacity.ChangePool{Capacity: ptr(5), IfVersion: &v}, t0, capacity.EPRECONDITION)
	// Commands without If-Match go on deciding against the evolved state.
	events, err := capacity.Decide(p, capacity.ChangePool{Capacity: ptr(5)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	requireEqual(t, "events", events, []capacity.Event{capacity.CapacityChanged{From: 20, To: 5, At: t0}})
	for _, e := range events {
		p.Evolve(e, 0)
	}
	for i, e := range append(first, events...) {
		p.Stamp(e, v+1+uint64(i))
	}
	if got, want := p.Version, v+2; got != want {
		t.Fatalf("version = %d, want %d", got, want)
	}
	v = p.Version
	mustDo(t, p, capacity.ChangePool{Status: capacity.Closed, IfVersion: &v}, t0)
}

// Evolve with seq 0 then Stamp ends where Evolve with the seq does.
func TestEvolveThenStamp(t *testing.T) {
	events := []capacity.Event{
		capacity.PoolDefined{Pool: "p", Region: "r", Kind: "k", StartsAt: t0, EndsAt: t0.Add(time.Hour), Capacity: 3, DefinedAt: t0},
		capacity.Held{ReservationID: "r1", Quantity: 2, TTL: time.Minute, ExpiresAt: t0.Add(time.Minute), At: t0},
		capacity.Confirmed{ReservationID: "r1", At: t0},
	}
	direct, later := &capacity.Pool{}, &capacity.Pool{}
	for i, e := range events {
		direct.Evolve(e, uint64(i+1))
		later.Evolve(e, 0)
	}
	if got, want := later.Version, uint64(0); got != want {
		t.Fatalf("unstamped version = %d, want %d", got, want)
	}
	for i, e := range events {
		later.Stamp(e, uint64(i+1))
	}
	requireSamePool(t, later, direct)
	if got, want := direct.Reservations["r1"].Version, uint64(3); got != want {
		t.Fatalf("reservation version = %d, want %d", got, want)
	}
}

// A history Decide never writes (the same Held twice, events for unknown
// reservations) still folds into a pool whose counts agree with its
// reservations, as a snapshot recounts them.
func TestEvolveOddHistory(t *testing.T) {
	p := &capacity.Pool{}
	mustApply(t, p,
		capacity.Confirmed{ReservationID: "ghost", At: t0},
		capacity.PoolDefined{Pool: "p", Region: "r", Kind: "k", StartsAt: t0, EndsAt: t0.Add(time.Hour), Capacity: 3, DefinedAt: t0},
		capacity.Held{ReservationID: "r1", Quantity: 2, TTL: time.Minute, ExpiresAt: t0.Add(time.Minute), At: t0},
		capacity.Confirmed{ReservationID: "r1", At: t0},
		capacity.Held{ReservationID: "r1", Quantity: 1, TTL: time.Minute, ExpiresAt: t0.Add(time.Minute), At: t0},
		capacity.Released{ReservationID: "ghost", At: t0},
		capacity.Expired{ReservationID: "ghost", At: t0},
	)
	requireEqual(t, "figures", p.FiguresAt(t0), capacity.Figures{Held: 1, Available: 2})
	requireSamePool(t, snapshotRoundTrip(t, p), p)
}

// Decide works in UTC without monotonic clock readings, so an event reads
// back from its encoding exactly as decided, whatever clock the caller used.
func TestDecideNormalisesNow(t *testing.T) {
	wall := time.Now().In(time.FixedZone("CEST", 2*3600)) // has a monotonic reading
	def := slot()
	def.StartsAt, def.EndsAt = wall.Add(10*time.Hour), wall.Add(11*time.Hour)
	p := &capacity.Pool{}
	mustDo(t, p, def, wall.Add(-time.Hour))
	events := mustDo(t, p, hold("r1", 1, time.Minute), wall)
	h := events[0].(capacity.Held)
	if got, want := h.At, wall.Round(0).UTC(); got != want {
		t.Fatalf("At = %#v, want %#v", got, want)
	}
	requireEqual(t, "decoded", roundTrip(t, h), capacity.Event(h))
}
