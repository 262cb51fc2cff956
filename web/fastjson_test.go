package web

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"pgregory.net/rapid"
)

// TestReservationJSONMatchesEncodingJSON: the hand-written encoding of a
// reservation is byte for byte encoding/json's, for any field values:
// omitted and present optional fields, times in any zone and with any
// nanoseconds, and strings that need escaping (which go through
// encoding/json). A year encoding/json refuses makes the fast path give up.
func TestReservationJSONMatchesEncodingJSON(t *testing.T) {
	str := rapid.OneOf(rapid.StringMatching(`[A-Za-z0-9_-]{0,12}`), rapid.String())
	when := rapid.Custom(func(t *rapid.T) time.Time {
		if rapid.Bool().Draw(t, "zero") {
			return time.Time{}
		}
		zone := time.FixedZone("z", rapid.IntRange(-14*3600, 14*3600).Draw(t, "offset"))
		return time.Unix(rapid.Int64Range(-62135596800, 253402300799).Draw(t, "sec"),
			rapid.Int64Range(0, 999999999).Draw(t, "nsec")).In(zone)
	})
	rapid.Check(t, func(t *rapid.T) {
		r := reservationJSON{
			ReservationID: str.Draw(t, "id"), Pool: str.Draw(t, "pool"), Quantity: rapid.Int().Draw(t, "quantity"),
			Status: str.Draw(t, "status"), ExpiresAt: when.Draw(t, "expires"), Version: rapid.Uint64().Draw(t, "version"),
			HeldAt: when.Draw(t, "held"), TTL: str.Draw(t, "ttl"), PoolVersion: rapid.Uint64Range(0, 3).Draw(t, "pv"),
			HeldQuantity: rapid.IntRange(-1, 2).Draw(t, "hq"), Booking: rapid.SampledFrom([]string{"", "b-1", "<&>"}).Draw(t, "booking"),
		}
		for range rapid.IntRange(0, 3).Draw(t, "items") {
			r.Items = append(r.Items, capacity.BookingItem{Pool: str.Draw(t, "item pool"), Quantity: rapid.Int().Draw(t, "item q")})
		}
		var want bytes.Buffer
		got, ok := r.appendJSON(nil)
		if err := json.NewEncoder(&want).Encode(r); err != nil {
			if ok {
				t.Fatalf("fast path encoded what encoding/json refuses (%v): %s", err, got)
			}
			return
		}
		if !ok {
			t.Fatalf("fast path gave up on %+v", r)
		}
		if string(append(got, '\n')) != want.String() {
			t.Fatalf("fast:\n%s\nencoding/json:\n%s", got, want.String())
		}
	})
	far := reservationJSON{ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, ok := far.appendJSON(nil); ok {
		t.Fatal("a year past 9999 encoded; encoding/json refuses it")
	}
}
