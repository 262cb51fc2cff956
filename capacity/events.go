package capacity

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Event type names. They are dotted so they drop straight into headers and
// subjects, and they never change: a new shape of an event gets a new
// SchemaVersion, not a new name.
const (
	PoolDefinedType     = "capacity.pool.defined"
	CapacityChangedType = "capacity.pool.capacity_changed"
	PoolClosedType      = "capacity.pool.closed"
	PoolReopenedType    = "capacity.pool.reopened"
	HeldType            = "capacity.reservation.held"
	ConfirmedType       = "capacity.reservation.confirmed"
	ReleasedType        = "capacity.reservation.released"
	ExpiredType         = "capacity.reservation.expired"
	ExtendedType        = "capacity.reservation.extended"
	OverbookChangedType = "capacity.pool.overbook_changed"
)

// SchemaVersion is the version of the JSON shape every event is written with.
// Decode accepts versions up to it and refuses newer ones, so an old binary
// never misreads a history written by a newer one.
//
// Version 2 writes a Held event's ttl as a Go duration string ("10m0s", the
// API's form) where version 1 wrote nanoseconds; both forms decode in
// either version, so old histories replay exactly as before.
const SchemaVersion = 2

// Event is something that happened to a pool. Events are facts: past tense,
// never validated again when replayed.
type Event interface {
	// EventType returns the event's dotted type name.
	EventType() string
}

// PoolDefined records a pool's creation with its definition.
type PoolDefined struct {
	Pool      string    `json:"pool"`
	Region    string    `json:"region"`
	Kind      string    `json:"kind"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	Capacity  int       `json:"capacity"`
	Overbook  int       `json:"overbook,omitempty"`
	DefinedAt time.Time `json:"at"`
}

// CapacityChanged records a planner's change of a pool's capacity.
type CapacityChanged struct {
	From int       `json:"from"`
	To   int       `json:"to"`
	At   time.Time `json:"at"`
}

// OverbookChanged records a planner's change of a pool's overbooking
// allowance (units it may sell above its capacity).
type OverbookChanged struct {
	From int       `json:"from"`
	To   int       `json:"to"`
	At   time.Time `json:"at"`
}

// PoolClosed records that a pool stopped taking new holds.
type PoolClosed struct {
	At time.Time `json:"at"`
}

// PoolReopened records that a closed pool takes new holds again.
type PoolReopened struct {
	At time.Time `json:"at"`
}

// Held records a hold of Quantity units until ExpiresAt. TTL is kept so a retried
// hold can be recognised as the same request; it is written as a Go
// duration string, the API's form, and read in that form or as nanoseconds
// (SchemaVersion 1). A hold that is one pool's part of a booking names it
// (Booking, equal to ReservationID) and carries the booking's whole item
// list, so any one pool's history says which other pools the booking holds;
// both are absent (omitted) for a plain hold.
type Held struct {
	ReservationID string        `json:"reservation_id"`
	Quantity      int           `json:"quantity"`
	TTL           time.Duration `json:"ttl"`
	ExpiresAt     time.Time     `json:"expires_at"`
	At            time.Time     `json:"at"`
	Booking       string        `json:"booking,omitempty"`
	Items         []BookingItem `json:"items,omitempty"`
}

// heldJSON is Held as JSON, its TTL as written (string or number).
type heldJSON struct {
	ReservationID string          `json:"reservation_id"`
	Quantity      int             `json:"quantity"`
	TTL           json.RawMessage `json:"ttl"`
	ExpiresAt     time.Time       `json:"expires_at"`
	At            time.Time       `json:"at"`
	Booking       string          `json:"booking,omitempty"`
	Items         []BookingItem   `json:"items,omitempty"`
}

// MarshalJSON writes the TTL as a Go duration string.
func (h Held) MarshalJSON() ([]byte, error) {
	ttl, _ := json.Marshal(h.TTL.String())
	return json.Marshal(heldJSON{ReservationID: h.ReservationID, Quantity: h.Quantity, TTL: ttl, ExpiresAt: h.ExpiresAt, At: h.At, Booking: h.Booking, Items: h.Items})
}

// UnmarshalJSON reads the TTL as a duration string or as nanoseconds.
func (h *Held) UnmarshalJSON(data []byte) error {
	var v heldJSON
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	ttl, err := parseTTL(v.TTL)
	if err != nil {
		return err
	}
	*h = Held{ReservationID: v.ReservationID, Quantity: v.Quantity, TTL: ttl, ExpiresAt: v.ExpiresAt, At: v.At, Booking: v.Booking, Items: v.Items}
	return nil
}

// parseTTL reads a stored TTL: a Go duration string, or an integer of
// nanoseconds (SchemaVersion 1). Absent or null is 0, as before.
func parseTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("ttl %q: %v", s, err)
		}
		return d, nil
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("ttl: %v", err)
	}
	return time.Duration(n), nil
}

// Confirmed records that a held reservation became a booking. Quantity, when
// set (v1.1), is fewer units than were held: those are confirmed and the
// rest given back in the same event. Absent (0) means every unit held, which
// is how every Confirmed written before v1.1 reads.
type Confirmed struct {
	ReservationID string    `json:"reservation_id"`
	At            time.Time `json:"at"`
	Quantity      int       `json:"quantity,omitempty"`
	Booking       string    `json:"booking,omitempty"`
}

// Released records that a held or confirmed reservation gave its units back.
type Released struct {
	ReservationID string    `json:"reservation_id"`
	At            time.Time `json:"at"`
	Booking       string    `json:"booking,omitempty"`
}

// Expired records that a hold passed its deadline unconfirmed. Capacity was
// already free from the deadline on; this event only writes it down.
type Expired struct {
	ReservationID string    `json:"reservation_id"`
	At            time.Time `json:"at"`
	Booking       string    `json:"booking,omitempty"`
}

// Extended records that a live hold got a new deadline, ExpiresAt (At plus
// TTL, the extension asked for). The hold's own TTL, by which a retried hold
// is recognised, does not change.
type Extended struct {
	ReservationID string        `json:"reservation_id"`
	TTL           time.Duration `json:"ttl"`
	ExpiresAt     time.Time     `json:"expires_at"`
	At            time.Time     `json:"at"`
	Booking       string        `json:"booking,omitempty"`
}

// EventType implements Event.
func (PoolDefined) EventType() string { return PoolDefinedType }

// EventType implements Event.
func (CapacityChanged) EventType() string { return CapacityChangedType }

// EventType implements Event.
func (OverbookChanged) EventType() string { return OverbookChangedType }

// EventType implements Event.
func (PoolClosed) EventType() string { return PoolClosedType }

// EventType implements Event.
func (PoolReopened) EventType() string { return PoolReopenedType }

// EventType implements Event.
func (Held) EventType() string { return HeldType }

// EventType implements Event.
func (Confirmed) EventType() string { return ConfirmedType }

// EventType implements Event.
func (Released) EventType() string { return ReleasedType }

// EventType implements Event.
func (Expired) EventType() string { return ExpiredType }

// EventType implements Event.
func (Extended) EventType() string { return ExtendedType }

// Encode returns the JSON body of e, written at SchemaVersion.
func Encode(e Event) ([]byte, error) {
	if h, ok := e.(Held); ok {
		if data, ok := appendHeld(nil, h); ok {
			return data, nil
		}
	}
	return json.Marshal(e)
}

// appendHeld writes a Held event's JSON exactly as json.Marshal would,
// without reflection: it is by far the most written event, and encoding it
// through encoding/json (which re-validates every time.Time it formats) was
// the largest cost of a hot pool's writer. It declines (false) anything
// json.Marshal would escape or refuse, leaving that to json.Marshal.
func appendHeld(buf []byte, h Held) ([]byte, bool) {
	if h.Booking != "" || h.Items != nil {
		return nil, false // a booking's part: rare enough for encoding/json
	}
	if !ValidID(h.ReservationID) || !jsonTime(h.ExpiresAt) || !jsonTime(h.At) {
		return nil, false
	}
	buf = append(buf, `{"reservation_id":"`...)
	buf = append(buf, h.ReservationID...)
	buf = append(buf, `","quantity":`...)
	buf = strconv.AppendInt(buf, int64(h.Quantity), 10)
	buf = append(buf, `,"ttl":"`...)
	buf = append(buf, h.TTL.String()...)
	buf = append(buf, `","expires_at":"`...)
	buf = h.ExpiresAt.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","at":"`...)
	buf = h.At.AppendFormat(buf, time.RFC3339Nano)
	return append(buf, `"}`...), true
}

// jsonTime reports whether t formats in RFC 3339 the way time.MarshalJSON
// does: a four-digit year and a zone offset of whole minutes.
func jsonTime(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, offset := t.Zone()
	return offset%60 == 0 && offset > -24*3600 && offset < 24*3600
}

// Decode parses an event body of the given type and schema version. Unknown
// types, newer versions and malformed bodies are EINVALID errors: the caller
// decides whether that is poison to skip (a projection) or a hard stop (a
// pool's own history).
func Decode(eventType string, version int, data []byte) (Event, error) {
	if version < 1 || version > SchemaVersion {
		return nil, Errorf(EINVALID, "event %s: unsupported schema version %d", eventType, version)
	}
	var decode func([]byte) (Event, error)
	switch eventType {
	case PoolDefinedType:
		decode = decodeAs[PoolDefined]
	case CapacityChangedType:
		decode = decodeAs[CapacityChanged]
	case OverbookChangedType:
		decode = decodeAs[OverbookChanged]
	case PoolClosedType:
		decode = decodeAs[PoolClosed]
	case PoolReopenedType:
		decode = decodeAs[PoolReopened]
	case HeldType:
		if h, ok := decodeHeldFast(data); ok {
			return h, nil
		}
		decode = decodeAs[Held]
	case ConfirmedType:
		decode = decodeAs[Confirmed]
	case ReleasedType:
		decode = decodeAs[Released]
	case ExpiredType:
		decode = decodeAs[Expired]
	case ExtendedType:
		decode = decodeAs[Extended]
	default:
		return nil, Errorf(EINVALID, "unknown event type %q", eventType)
	}
	e, err := decode(data)
	if err != nil {
		return nil, Errorf(EINVALID, "event %s: %v", eventType, err)
	}
	return e, nil
}

// EventTime returns when e happened, as recorded in the event itself.
func EventTime(e Event) time.Time {
	switch e := e.(type) {
	case PoolDefined:
		return e.DefinedAt
	case CapacityChanged:
		return e.At
	case OverbookChanged:
		return e.At
	case PoolClosed:
		return e.At
	case PoolReopened:
		return e.At
	case Held:
		return e.At
	case Confirmed:
		return e.At
	case Released:
		return e.At
	case Expired:
		return e.At
	case Extended:
		return e.At
	}
	return time.Time{}
}

func decodeAs[T Event](data []byte) (Event, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}

// CommitType is the message type of a commit that carries several events:
// the events one group-committed append recorded for one pool, stored as
// one message so that they share one write (and one fsync) and one stream
// sequence. A commit of a single event is stored as that event alone.
const CommitType = "capacity.commit"

// commitEntry is one event inside a commit message.
type commitEntry struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// EncodeCommit returns the message type and body that store events as one
// commit: the event itself when there is one, else a CommitType message
// whose body is a JSON array of {"type","data"}.
func EncodeCommit(events []Event) (messageType string, data []byte, err error) {
	switch len(events) {
	case 0:
		return "", nil, Errorf(EINVALID, "empty commit")
	case 1:
		data, err = Encode(events[0])
		return events[0].EventType(), data, err
	}
	// Built by hand: json.Marshal of json.RawMessage fields re-validates and
	// compacts every event body it was just given, which was a fifth of a
	// hot pool's CPU.
	buf := make([]byte, 0, 160*len(events))
	buf = append(buf, '[')
	for i, e := range events {
		body, err := Encode(e)
		if err != nil {
			return "", nil, err
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"type":"`...)
		buf = append(buf, e.EventType()...) // a constant of this package: nothing to escape
		buf = append(buf, `","data":`...)
		buf = append(buf, body...)
		buf = append(buf, '}')
	}
	return CommitType, append(buf, ']'), nil
}

// DecodeCommit parses a message written by EncodeCommit into its events, in
// order. Errors are EINVALID, as for Decode.
func DecodeCommit(messageType string, version int, data []byte) ([]Event, error) {
	if messageType != CommitType {
		e, err := Decode(messageType, version, data)
		if err != nil {
			return nil, err
		}
		return []Event{e}, nil
	}
	if entries, ok := splitCommitFast(data); ok {
		if events, err := decodeEntries(entries, version); err == nil {
			return events, nil
		}
		// A wrong cut can only give a body that is not valid JSON; let
		// encoding/json have the last word on what the commit holds.
	}
	var entries []commitEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, Errorf(EINVALID, "commit: %v", err)
	}
	return decodeEntries(entries, version)
}

func decodeEntries(entries []commitEntry, version int) ([]Event, error) {
	if len(entries) == 0 {
		return nil, Errorf(EINVALID, "commit: no events")
	}
	events := make([]Event, len(entries))
	for i, entry := range entries {
		e, err := Decode(entry.Type, version, entry.Data)
		if err != nil {
			return nil, err
		}
		events[i] = e
	}
	return events, nil
}

// splitCommitFast splits a commit body in exactly the form EncodeCommit
// writes into its entries without validating the whole array first. Each
// body is cut at its first '}': event bodies are flat objects, and a cut
// inside a string or a nested object leaves a body that is not valid JSON,
// which Decode then refuses. Anything unexpected returns false.
func splitCommitFast(data []byte) ([]commitEntry, bool) {
	rest, ok := cutPrefix(data, "[")
	if !ok {
		return nil, false
	}
	var entries []commitEntry
	for {
		if rest, ok = cutPrefix(rest, `{"type":"`); !ok {
			return nil, false
		}
		end := 0
		for end < len(rest) && rest[end] != '"' && rest[end] != '\\' {
			end++
		}
		if end == len(rest) || rest[end] != '"' {
			return nil, false
		}
		typ := string(rest[:end])
		if rest, ok = cutPrefix(rest[end:], `","data":{`); !ok {
			return nil, false
		}
		close := 0
		for close < len(rest) && rest[close] != '}' {
			close++
		}
		if close+1 >= len(rest) || rest[close+1] != '}' {
			return nil, false
		}
		entries = append(entries, commitEntry{Type: typ, Data: data[len(data)-len(rest)-1 : len(data)-len(rest)+close+1]})
		rest = rest[close+2:]
		switch {
		case len(rest) == 1 && rest[0] == ']':
			return entries, true
		case len(rest) > 1 && rest[0] == ',':
			rest = rest[1:]
		default:
			return nil, false
		}
	}
}

// decodeHeldFast parses a Held body in exactly the form appendHeld writes,
// without reflection; any other form (other field order, spaces, escapes,
// unknown fields) returns false and is left to encoding/json. Projections
// replay millions of these.
func decodeHeldFast(data []byte) (Held, bool) {
	var h Held
	rest, ok := cutPrefix(data, `{"reservation_id":"`)
	if !ok {
		return h, false
	}
	end := 0
	for end < len(rest) && end <= MaxIDLength && isIDByte(rest[end]) {
		end++
	}
	if end == 0 || end > MaxIDLength {
		return h, false
	}
	h.ReservationID = string(rest[:end])
	if rest, ok = cutPrefix(rest[end:], `","quantity":`); !ok {
		return h, false
	}
	var n int64
	if n, rest, ok = cutInt(rest); !ok {
		return h, false
	}
	h.Quantity = int(n)
	if rest, ok = cutPrefix(rest, `,"ttl":`); !ok {
		return h, false
	}
	if h.TTL, rest, ok = cutTTL(rest); !ok {
		return h, false
	}
	if rest, ok = cutPrefix(rest, `,"expires_at":`); !ok {
		return h, false
	}
	if h.ExpiresAt, rest, ok = cutTime(rest); !ok {
		return h, false
	}
	if rest, ok = cutPrefix(rest, `,"at":`); !ok {
		return h, false
	}
	if h.At, rest, ok = cutTime(rest); !ok {
		return h, false
	}
	return h, string(rest) == `}`
}

// cutTTL reads a TTL as appendHeld writes it (a quoted Go duration of
// plain characters) or as SchemaVersion 1 did (nanoseconds).
func cutTTL(b []byte) (time.Duration, []byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		n, rest, ok := cutInt(b)
		return time.Duration(n), rest, ok
	}
	end := 1
	for end < len(b) && end < 40 && b[end] != '"' && b[end] != '\\' {
		end++
	}
	if end >= len(b) || b[end] != '"' {
		return 0, b, false
	}
	d, err := time.ParseDuration(string(b[1:end]))
	if err != nil {
		return 0, b, false
	}
	return d, b[end+1:], true
}

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// cutInt parses a JSON integer (no fraction or exponent) that fits int64.
func cutInt(b []byte) (int64, []byte, bool) {
	end := 0
	if end < len(b) && b[end] == '-' {
		end++
	}
	digits := end
	for end < len(b) && b[end] >= '0' && b[end] <= '9' {
		end++
	}
	if end == digits || end-digits > 18 || (b[digits] == '0' && end-digits > 1) {
		return 0, b, false // none, too long to be sure it fits, or a leading zero
	}
	n, err := strconv.ParseInt(string(b[:end]), 10, 64)
	return n, b[end:], err == nil
}

// cutTime parses a quoted JSON time with time.Time's own UnmarshalJSON,
// the very code encoding/json would call.
func cutTime(b []byte) (time.Time, []byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return time.Time{}, b, false
	}
	end := 1
	for end < len(b) && b[end] != '"' && b[end] != '\\' && end < 48 {
		end++
	}
	if end == len(b) || b[end] != '"' {
		return time.Time{}, b, false
	}
	var t time.Time
	if err := t.UnmarshalJSON(b[:end+1]); err != nil {
		return time.Time{}, b, false
	}
	return t, b[end+1:], true
}
