package capacity

import (
	"encoding/json"
	"reflect"
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
	p.Evolve(CapacityChanged{From: 10, To: 12, At: at}, 3)
	p.Evolve(PoolClosed{At: at}, 4)
	v3, err := p.MarshalSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	// The same pool in version 2: a JSON head, then the same reservations.
	d := decoder{buf: v3[len(snapshotMagic):]}
	var q Pool
	if err := d.head(&q); err != nil {
		t.Fatal(err)
	}
	head := p.toJSON()
	head.Reservations = nil
	meta, err := json.Marshal(&head)
	if err != nil {
		t.Fatal(err)
	}
	v2 := appendBytes(append([]byte(nil), snapshotMagicV2...), meta)
	v2 = append(v2, d.buf...)
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
