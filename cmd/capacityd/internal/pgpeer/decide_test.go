package pgpeer

import (
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

func TestDecideHold(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	open := poolRow{EndsAt: now.Add(time.Hour), Capacity: 10, Overbook: 2, Held: 5, Confirmed: 3}
	same := &reservationRow{Quantity: 2, TTL: time.Hour}
	for _, tc := range []struct {
		name      string
		pool      poolRow
		existing  *reservationRow
		hold      capacity.Hold
		wantWrite bool
		wantCode  string
	}{
		{"fits", open, nil, capacity.Hold{ReservationID: "r", Quantity: 2, TTL: time.Hour}, true, ""},
		{"fits into the overbooking allowance", open, nil, capacity.Hold{ReservationID: "r", Quantity: 4, TTL: time.Hour}, true, ""},
		{"one unit too many", open, nil, capacity.Hold{ReservationID: "r", Quantity: 5, TTL: time.Hour}, false, capacity.EINSUFFICIENT},
		{"repeat of the same hold", open, same, capacity.Hold{ReservationID: "r", Quantity: 2, TTL: time.Hour}, false, ""},
		{"repeat even when full", poolRow{EndsAt: now.Add(time.Hour), Capacity: 2, Held: 2}, same, capacity.Hold{ReservationID: "r", Quantity: 2, TTL: time.Hour}, false, ""},
		{"same id, other quantity", open, same, capacity.Hold{ReservationID: "r", Quantity: 1, TTL: time.Hour}, false, capacity.ECONFLICT},
		{"same id, other ttl", open, same, capacity.Hold{ReservationID: "r", Quantity: 2, TTL: time.Minute}, false, capacity.ECONFLICT},
		{"window ended", poolRow{EndsAt: now, Capacity: 10}, nil, capacity.Hold{ReservationID: "r", Quantity: 1, TTL: time.Hour}, false, capacity.ECLOSED},
		{"capacity zero", poolRow{EndsAt: now.Add(time.Hour)}, nil, capacity.Hold{ReservationID: "r", Quantity: 1, TTL: time.Hour}, false, capacity.EINSUFFICIENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write, err := decideHold(tc.pool, tc.existing, tc.hold, now)
			if got, want := capacity.ErrorCode(err), tc.wantCode; got != want {
				t.Fatalf("error = %v (code %q), want code %q", err, got, want)
			}
			if got, want := write, tc.wantWrite; got != want {
				t.Errorf("write = %v, want %v", got, want)
			}
		})
	}
}

func TestSameDefinition(t *testing.T) {
	starts := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	d := capacity.DefinePool{Pool: "p", Region: "eu", Kind: "k", StartsAt: starts, EndsAt: starts.Add(time.Hour), Capacity: 5, Overbook: 1}
	p := poolRow{ID: "p", Region: "eu", Kind: "k", StartsAt: starts.In(time.FixedZone("x", 3600)), EndsAt: starts.Add(time.Hour), Capacity: 5, Overbook: 1, Held: 3}
	if !sameDefinition(p, d) {
		t.Errorf("sameDefinition(%+v, %+v) = false: counters and time zones are no part of a definition", p, d)
	}
	for name, change := range map[string]func(*capacity.DefinePool){
		"region":   func(d *capacity.DefinePool) { d.Region = "us" },
		"kind":     func(d *capacity.DefinePool) { d.Kind = "j" },
		"starts":   func(d *capacity.DefinePool) { d.StartsAt = d.StartsAt.Add(time.Second) },
		"ends":     func(d *capacity.DefinePool) { d.EndsAt = d.EndsAt.Add(time.Second) },
		"capacity": func(d *capacity.DefinePool) { d.Capacity++ },
		"overbook": func(d *capacity.DefinePool) { d.Overbook = 0 },
	} {
		other := d
		change(&other)
		if sameDefinition(p, other) {
			t.Errorf("another %s: sameDefinition = true, want false", name)
		}
	}
}
