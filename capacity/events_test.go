package capacity_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// sampleEvents returns one event of every type, every field set.
func sampleEvents() []capacity.Event {
	return []capacity.Event{
		capacity.PoolDefined{Pool: "p1", Region: "ams", Kind: "delivery", StartsAt: t0.Add(10 * time.Hour),
			EndsAt: t0.Add(11 * time.Hour), Capacity: 10, Overbook: 2, DefinedAt: t0},
		capacity.CapacityChanged{From: 10, To: 12, At: t0.Add(1)},
		capacity.PoolClosed{At: t0.Add(2)},
		capacity.PoolReopened{At: t0.Add(3)},
		capacity.Held{ReservationID: "r1", Quantity: 3, TTL: 5*time.Minute + 1, ExpiresAt: t0.Add(5*time.Minute + 5), At: t0.Add(4)},
		capacity.Confirmed{ReservationID: "r1", At: t0.Add(5)},
		capacity.Released{ReservationID: "r1", At: t0.Add(6)},
		capacity.Expired{ReservationID: "r1", At: t0.Add(7)},
		capacity.OverbookChanged{From: 2, To: 5, At: t0.Add(8)},
	}
}

// A Held event is written with its ttl as a Go duration string (the API's
// form), and one written by SchemaVersion 1, with nanoseconds, still
// decodes to the same event, on the fast path and the slow one alike.
func TestHeldTTLForms(t *testing.T) {
	want := capacity.Held{ReservationID: "r1", Quantity: 2, TTL: 10 * time.Minute, ExpiresAt: t0.Add(10 * time.Minute), At: t0}
	data, err := capacity.Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data); !strings.Contains(got, `"ttl":"10m0s"`) {
		t.Fatalf("encoded = %s, want ttl \"10m0s\"", got)
	}
	old := `{"reservation_id":"r1","quantity":2,"ttl":600000000000,"expires_at":"2030-05-01T08:10:00Z","at":"2030-05-01T08:00:00Z"}`
	spaced := `{"quantity":2, "reservation_id":"r1","ttl":600000000000,"expires_at":"2030-05-01T08:10:00Z","at":"2030-05-01T08:00:00Z"}`
	spacedNew := `{"quantity":2, "reservation_id":"r1","ttl":"10m","expires_at":"2030-05-01T08:10:00Z","at":"2030-05-01T08:00:00Z"}`
	for _, tc := range []struct {
		name    string
		version int
		body    string
	}{
		{"current", capacity.SchemaVersion, string(data)},
		{"version 1 nanoseconds", 1, old},
		{"version 1 nanoseconds, slow path", 1, spaced},
		{"duration string, slow path", capacity.SchemaVersion, spacedNew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := capacity.Decode(capacity.HeldType, tc.version, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			requireEqual(t, "decoded", e, capacity.Event(want))
		})
	}
	if _, err := capacity.Decode(capacity.HeldType, capacity.SchemaVersion, []byte(`{"reservation_id":"r1","quantity":2,"ttl":"soon","expires_at":"2030-05-01T08:10:00Z","at":"2030-05-01T08:00:00Z"}`)); capacity.ErrorCode(err) != capacity.EINVALID {
		t.Fatalf("ttl \"soon\": err = %v, want EINVALID", err)
	}
}

func TestEncodeDecode(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range sampleEvents() {
		t.Run(e.EventType(), func(t *testing.T) {
			if seen[e.EventType()] {
				t.Fatalf("type %s twice", e.EventType())
			}
			seen[e.EventType()] = true
			if !strings.HasPrefix(e.EventType(), "capacity.") || strings.ContainsAny(e.EventType(), " *>") {
				t.Fatalf("type %q does not fit in a subject", e.EventType())
			}
			requireEqual(t, "decoded", roundTrip(t, e), e)
			if got := capacity.EventTime(e); got.IsZero() {
				t.Fatalf("EventTime = zero")
			}
			wantID := ""
			if strings.HasPrefix(e.EventType(), "capacity.reservation.") {
				wantID = "r1"
			}
			if got, want := capacity.ReservationID(e), wantID; got != want {
				t.Fatalf("ReservationID = %q, want %q", got, want)
			}
		})
	}
}

// An event written in another zone decodes to the same instant and encodes
// to the same bytes.
func TestDecodeKeepsOffset(t *testing.T) {
	body := []byte(`{"reservation_id":"r1","at":"2030-05-01T10:00:00.5+02:00"}`)
	e, err := capacity.Decode(capacity.ConfirmedType, capacity.SchemaVersion, body)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := capacity.EventTime(e), t0.Add(500*time.Millisecond); !got.Equal(want) {
		t.Fatalf("at = %v, want %v", got, want)
	}
	again, err := capacity.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(again), string(body); got != want {
		t.Fatalf("encoded = %s, want %s", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, err := capacity.Encode(sampleEvents()[4])
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		eventType string
		version   int
		data      string
	}{
		{"unknown type", "capacity.reservation.teleported", capacity.SchemaVersion, string(valid)},
		{"empty type", "", capacity.SchemaVersion, string(valid)},
		{"version 0", capacity.HeldType, 0, string(valid)},
		{"negative version", capacity.HeldType, -1, string(valid)},
		{"newer version", capacity.HeldType, capacity.SchemaVersion + 1, string(valid)},
		{"empty body", capacity.HeldType, capacity.SchemaVersion, ""},
		{"truncated", capacity.HeldType, capacity.SchemaVersion, string(valid[:len(valid)-1])},
		{"not an object", capacity.HeldType, capacity.SchemaVersion, `[1,2]`},
		{"trailing junk", capacity.HeldType, capacity.SchemaVersion, string(valid) + "x"},
		{"wrong field type", capacity.HeldType, capacity.SchemaVersion, `{"quantity":"three"}`},
		{"bad time", capacity.ConfirmedType, capacity.SchemaVersion, `{"reservation_id":"r1","at":"yesterday"}`},
		{"number too big", capacity.CapacityChangedType, capacity.SchemaVersion, `{"from":1e100}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := capacity.Decode(tt.eventType, tt.version, []byte(tt.data))
			if got, want := capacity.ErrorCode(err), capacity.EINVALID; got != want {
				t.Fatalf("code = %q (%v), want %q", got, err, want)
			}
			if e != nil {
				t.Fatalf("event = %#v, want nil", e)
			}
		})
	}
}

// roundTrip encodes e and decodes it back.
func roundTrip(t testing.TB, e capacity.Event) capacity.Event {
	t.Helper()
	data, err := capacity.Encode(e)
	if err != nil {
		t.Fatalf("Encode(%#v): %v", e, err)
	}
	back, err := capacity.Decode(e.EventType(), capacity.SchemaVersion, data)
	if err != nil {
		t.Fatalf("Decode(%s): %v", data, err)
	}
	return back
}

// inUTC returns e with its times in UTC, for comparing events read in
// different zones.
func inUTC(e capacity.Event) capacity.Event {
	switch e := e.(type) {
	case capacity.PoolDefined:
		e.StartsAt, e.EndsAt, e.DefinedAt = e.StartsAt.UTC(), e.EndsAt.UTC(), e.DefinedAt.UTC()
		return e
	case capacity.CapacityChanged:
		e.At = e.At.UTC()
		return e
	case capacity.PoolClosed:
		e.At = e.At.UTC()
		return e
	case capacity.PoolReopened:
		e.At = e.At.UTC()
		return e
	case capacity.Held:
		e.ExpiresAt, e.At = e.ExpiresAt.UTC(), e.At.UTC()
		return e
	case capacity.Confirmed:
		e.At = e.At.UTC()
		return e
	case capacity.Released:
		e.At = e.At.UTC()
		return e
	case capacity.Expired:
		e.At = e.At.UTC()
		return e
	}
	return e
}

func FuzzDecode(f *testing.F) {
	for _, e := range sampleEvents() {
		data, err := capacity.Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e.EventType(), capacity.SchemaVersion, data)
	}
	f.Add(capacity.HeldType, 1, []byte(`{"reservation_id":"r\u00e9","quantity":-5,"ttl":-1,"expires_at":"0000-01-01T00:00:00+23:59","at":"9999-12-31T23:59:59.999999999-23:59"}`))
	f.Add(capacity.PoolDefinedType, 1, []byte(`{"POOL":"x","pool":"y","capacity":9223372036854775807}`))
	f.Add(capacity.ConfirmedType, 1, []byte("{\"reservation_id\":\"\xff\xfe\"}"))
	f.Add(capacity.ExpiredType, 1, []byte(`null`))
	f.Add(capacity.ReleasedType, 2, []byte(`{}`))
	f.Add("capacity.pool.defined ", 1, []byte(`{}`))
	f.Add(capacity.CapacityChangedType, 1, []byte(`{"from":1.5}`))
	f.Add(capacity.PoolClosedType, 1, []byte(`{"at":"2030-05-01T10:00:00Z","at":"2030-05-01T11:00:00+01:00"}`))
	f.Add(capacity.HeldType, 1, []byte(`{`))

	f.Fuzz(func(t *testing.T, eventType string, version int, data []byte) {
		e, err := capacity.Decode(eventType, version, data)
		if err != nil {
			if got, want := capacity.ErrorCode(err), capacity.EINVALID; got != want {
				t.Fatalf("code = %q (%v), want %q", got, err, want)
			}
			if e != nil {
				t.Fatalf("event %#v with error %v", e, err)
			}
			return
		}
		if got, want := e.EventType(), eventType; got != want {
			t.Fatalf("EventType = %q, want %q", got, want)
		}
		encoded, err := capacity.Encode(e)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", e, err)
		}
		back, err := capacity.Decode(eventType, capacity.SchemaVersion, encoded)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)) = %v", e, err)
		}
		if !reflect.DeepEqual(inUTC(back), inUTC(e)) {
			t.Fatalf("round trip = %#v, want %#v", back, e)
		}
		again, err := capacity.Encode(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, encoded) {
			t.Fatalf("encoding changed: %s, was %s", again, encoded)
		}
	})
}

func TestCommitRoundTrip(t *testing.T) {
	events := sampleEvents()
	for n := 1; n <= len(events); n++ {
		typ, data, err := capacity.EncodeCommit(events[:n])
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && typ != events[0].EventType() {
			t.Fatalf("a commit of one event has type %q, want the event's own %q", typ, events[0].EventType())
		}
		if n > 1 && typ != capacity.CommitType {
			t.Fatalf("a commit of %d events has type %q", n, typ)
		}
		back, err := capacity.DecodeCommit(typ, capacity.SchemaVersion, data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(inUTCAll(back), inUTCAll(events[:n])) {
			t.Fatalf("commit of %d round trip:\n got %#v\nwant %#v", n, back, events[:n])
		}
	}
	if _, _, err := capacity.EncodeCommit(nil); capacity.ErrorCode(err) != capacity.EINVALID {
		t.Fatalf("empty commit: %v", err)
	}
	for _, body := range []string{`[]`, `[{"type":"capacity.nope","data":{}}]`, `{}`, `[{"type":"capacity.reservation.held","data":"x"}]`} {
		if _, err := capacity.DecodeCommit(capacity.CommitType, 1, []byte(body)); capacity.ErrorCode(err) != capacity.EINVALID {
			t.Errorf("DecodeCommit(%s) = %v, want EINVALID", body, err)
		}
	}
}

func inUTCAll(events []capacity.Event) []capacity.Event {
	out := make([]capacity.Event, len(events))
	for i, e := range events {
		out[i] = inUTC(e)
	}
	return out
}

// FuzzDecodeCommit feeds arbitrary commit bodies to DecodeCommit: it must
// refuse with EINVALID or return events that encode back to a commit that
// decodes to the same events.
func FuzzDecodeCommit(f *testing.F) {
	_, data, err := capacity.EncodeCommit(sampleEvents())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`[{"type":"capacity.reservation.held","data":{"reservation_id":"a","quantity":1}}]`))
	f.Add([]byte(`[{"type":"capacity.commit","data":[]}]`))
	f.Add([]byte(`[null]`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		events, err := capacity.DecodeCommit(capacity.CommitType, capacity.SchemaVersion, data)
		if err != nil {
			if got, want := capacity.ErrorCode(err), capacity.EINVALID; got != want {
				t.Fatalf("code = %q (%v), want %q", got, err, want)
			}
			return
		}
		typ, encoded, err := capacity.EncodeCommit(events)
		if err != nil {
			t.Fatalf("EncodeCommit: %v", err)
		}
		back, err := capacity.DecodeCommit(typ, capacity.SchemaVersion, encoded)
		if err != nil {
			t.Fatalf("DecodeCommit(EncodeCommit) = %v", err)
		}
		if !reflect.DeepEqual(inUTCAll(back), inUTCAll(events)) {
			t.Fatalf("round trip changed the events:\n got %#v\nwant %#v", back, events)
		}
	})
}

// The hand-written Held encoder writes exactly what json.Marshal writes.
func TestEncodeHeldMatchesMarshal(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("plus", 5*3600+30*60), time.FixedZone("minus", -8*3600)}
	for i, h := range []capacity.Held{
		{ReservationID: "r-1_A", Quantity: 1, TTL: time.Minute, ExpiresAt: time.Date(2027, 1, 1, 18, 0, 0, 0, time.UTC), At: time.Date(2027, 1, 1, 17, 59, 0, 0, time.UTC)},
		{ReservationID: "x", Quantity: 1_000_000, TTL: 7 * 24 * time.Hour, ExpiresAt: time.Date(2027, 1, 1, 18, 0, 0, 123456789, zones[1]), At: time.Date(2027, 1, 1, 17, 0, 0, 120000000, zones[2])},
		{ReservationID: "neg", Quantity: -3, TTL: -1, ExpiresAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), At: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{ReservationID: "needs \"escaping\" <&>", Quantity: 2, TTL: time.Second, ExpiresAt: time.Now(), At: time.Now()},
		{ReservationID: "odd-zone", Quantity: 2, TTL: time.Second, ExpiresAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.FixedZone("lmt", 3601)), At: time.Now()},
		{ReservationID: "far", Quantity: 2, TTL: time.Second, ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), At: time.Now()},
	} {
		got, gotErr := capacity.Encode(h)
		want, wantErr := json.Marshal(h)
		if (gotErr == nil) != (wantErr == nil) || string(got) != string(want) {
			t.Errorf("case %d: Encode = %s, %v\n          json.Marshal = %s, %v", i, got, gotErr, want, wantErr)
		}
	}
}
