package capacity

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"
)

// Snapshots of version 2, whose head is JSON, still decode to the pool
// version 3 encodes: the write side's bucket keeps them until each pool
// writes its next snapshot.
func TestSnapshotVersion2StillRead(t *testing.T) {
	at := time.Date(2030, 5, 1, 8, 0, 0, 0, time.UTC)
	var p Pool
	p.Evolve(PoolDefined{Pool: "p1", Region: "r", Kind: "k", StartsAt: at.Add(time.Hour), EndsAt: at.Add(2 * time.Hour), Capacity: 10, Overbook: 1, DefinedAt: at}, 1)
	p.Evolve(Held{ReservationID: "h1", Quantity: 2, TTL: time.Minute, ExpiresAt: at.Add(time.Minute), At: at}, 2)
	p.Evolve(Held{ReservationID: "h2", Quantity: 3, TTL: time.Hour, ExpiresAt: at.Add(time.Hour), At: at}, 2)
	p.Evolve(Confirmed{ReservationID: "h2", Quantity: 1, At: at.Add(time.Minute)}, 3)
	p.Evolve(CapacityChanged{From: 10, To: 12, At: at}, 3)
	p.Evolve(PoolClosed{At: at}, 4)
	v3, err := p.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	// The same pool as version 2 wrote it: a JSON head, each reservation's
	// status a string and its times in full.
	head := p.toJSON()
	head.Reservations = nil
	meta, err := json.Marshal(&head)
	if err != nil {
		t.Fatal(err)
	}
	v2 := appendBytes(append([]byte(nil), snapshotMagicV2...), meta)
	v2 = binary.AppendUvarint(v2, uint64(len(p.Reservations)))
	for _, id := range slices.Sorted(maps.Keys(p.Reservations)) {
		r := p.Reservations[id]
		v2 = appendBytes(v2, []byte(id))
		v2 = binary.AppendVarint(v2, int64(r.Quantity))
		v2 = binary.AppendVarint(v2, int64(r.HeldQuantity))
		v2 = binary.AppendVarint(v2, int64(r.TTL))
		v2 = appendBytes(v2, []byte(r.Status))
		for _, t := range []time.Time{r.HeldAt, r.ExpiresAt, r.UpdatedAt} {
			v2 = binary.AppendVarint(v2, unixNano(t))
		}
		v2 = binary.AppendUvarint(v2, r.Version)
		v2 = appendBytes(v2, []byte(r.Booking))
		v2 = binary.AppendUvarint(v2, 0)
	}
	v2 = appendBytes(v2, p.retired.pack())
	from2, err := UnmarshalSnapshot(v2)
	if err != nil {
		t.Fatal(err)
	}
	from3, err := UnmarshalSnapshot(v3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(from2, from3) {
		t.Fatalf("version 2 decodes to\n%+v\nversion 3 to\n%+v", from2, from3)
	}
	if got := from3.Definition(); got != p.Definition() {
		t.Fatalf("definition after a snapshot = %+v, want %+v", got, p.Definition())
	}
}
