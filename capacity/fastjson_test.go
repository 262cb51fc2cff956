package capacity

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzDecodeHeldFast checks the reflection-free Held decoder against
// encoding/json: whatever it accepts, json.Unmarshal accepts and decodes to
// the very same event.
func FuzzDecodeHeldFast(f *testing.F) {
	at := time.Date(2027, 1, 4, 18, 0, 0, 123456789, time.UTC)
	for _, h := range []Held{
		{ReservationID: "order-1", Quantity: 1, TTL: 10 * time.Minute, ExpiresAt: at.Add(10 * time.Minute), At: at},
		{ReservationID: "x", Quantity: -3, TTL: -1, ExpiresAt: at.In(time.FixedZone("", 3600)), At: time.Time{}},
	} {
		data, ok := appendHeld(nil, h)
		if !ok {
			f.Fatalf("appendHeld declined %+v", h)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"reservation_id":"a","quantity":01,"ttl":1,"expires_at":"2027-01-01T00:00:00Z","at":"2027-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"reservation_id":"a","quantity":1,"ttl":1,"expires_at":"2027-01-01T00:00:00z","at":"2027-01-01T24:00:00Z"}`))
	f.Add([]byte(`{"reservation_id":"a","quantity":-0,"ttl":99999999999999999999,"expires_at":"2027-01-01T00:00:00.Z","at":"2027-01-01T00:00:00+00:00"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeHeldFast(data)
		if !ok {
			return
		}
		var slow Held
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %#v\njson %#v", data, fast, slow)
		}
	})
}

// BenchmarkDecodeHeld compares the fast path with encoding/json.
func BenchmarkDecodeHeld(b *testing.B) {
	at := time.Date(2027, 1, 4, 18, 0, 0, 123456789, time.UTC)
	data, _ := appendHeld(nil, Held{ReservationID: "order-81723", Quantity: 2, TTL: 10 * time.Minute, ExpiresAt: at.Add(10 * time.Minute), At: at})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := Decode(HeldType, SchemaVersion, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var h Held
			if err := json.Unmarshal(data, &h); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzDecodeCommitFast checks DecodeCommit (with its fast split) against
// the plain encoding/json path: the same events, or an error from both.
func FuzzDecodeCommitFast(f *testing.F) {
	at := time.Date(2027, 1, 4, 18, 0, 0, 0, time.UTC)
	_, data, err := EncodeCommit([]Event{
		Held{ReservationID: "a", Quantity: 1, TTL: time.Minute, ExpiresAt: at.Add(time.Minute), At: at},
		Confirmed{ReservationID: "a", At: at},
		CapacityChanged{From: 1, To: 2, At: at},
		Held{ReservationID: "b", Quantity: 2, TTL: time.Minute, ExpiresAt: at.Add(time.Minute), At: at},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`[{"type":"capacity.reservation.released","data":{"reservation_id":"a}","at":"2027-01-01T00:00:00Z"}}]`))
	f.Add([]byte(`[{"type":"capacity.pool.closed","data":{"x":{"y":1},"at":"2027-01-01T00:00:00Z"}}]`))
	f.Add([]byte(`[{"type":"capacity.pool.closed","data":{}},{"type":"capacity.pool.reopened","data":{}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gotErr := DecodeCommit(CommitType, SchemaVersion, data)
		var entries []commitEntry
		var want []Event
		wantErr := json.Unmarshal(data, &entries)
		if wantErr == nil {
			want, wantErr = decodeEntries(entries, SchemaVersion)
		}
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: DecodeCommit error %v, json path error %v", data, gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nDecodeCommit %#v\njson path    %#v", data, got, want)
		}
	})
}
