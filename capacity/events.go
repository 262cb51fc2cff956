package capacity

import (
	"encoding/json"
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
)

// SchemaVersion is the version of the JSON shape every event is written with.
// Decode accepts versions up to it and refuses newer ones, so an old binary
// never misreads a history written by a newer one.
const SchemaVersion = 1

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

// PoolClosed records that a pool stopped taking new holds.
type PoolClosed struct {
	At time.Time `json:"at"`
}

// PoolReopened records that a closed pool takes new holds again.
type PoolReopened struct {
	At time.Time `json:"at"`
}

// Held records a hold of Quantity units until ExpiresAt. TTL is kept so a retried
// hold can be recognised as the same request.
type Held struct {
	ReservationID string        `json:"reservation_id"`
	Quantity      int           `json:"quantity"`
	TTL           time.Duration `json:"ttl"`
	ExpiresAt     time.Time     `json:"expires_at"`
	At            time.Time     `json:"at"`
}

// Confirmed records that a held reservation became a booking.
type Confirmed struct {
	ReservationID string    `json:"reservation_id"`
	At            time.Time `json:"at"`
}

// Released records that a held or confirmed reservation gave its units back.
type Released struct {
	ReservationID string    `json:"reservation_id"`
	At            time.Time `json:"at"`
}

// Expired records that a hold passed its deadline unconfirmed. Capacity was
// already free from the deadline on; this event only writes it down.
type Expired struct {
	ReservationID string    `json:"reservation_id"`
	At            time.Time `json:"at"`
}

// EventType implements Event.
func (PoolDefined) EventType() string { return PoolDefinedType }

// EventType implements Event.
func (CapacityChanged) EventType() string { return CapacityChangedType }

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
	if !ValidID(h.ReservationID) || !jsonTime(h.ExpiresAt) || !jsonTime(h.At) {
		return nil, false
	}
	buf = append(buf, `{"reservation_id":"`...)
	buf = append(buf, h.ReservationID...)
	buf = append(buf, `","quantity":`...)
	buf = strconv.AppendInt(buf, int64(h.Quantity), 10)
	buf = append(buf, `,"ttl":`...)
	buf = strconv.AppendInt(buf, int64(h.TTL), 10)
	buf = append(buf, `,"expires_at":"`...)
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
	case PoolClosedType:
		decode = decodeAs[PoolClosed]
	case PoolReopenedType:
		decode = decodeAs[PoolReopened]
	case HeldType:
		decode = decodeAs[Held]
	case ConfirmedType:
		decode = decodeAs[Confirmed]
	case ReleasedType:
		decode = decodeAs[Released]
	case ExpiredType:
		decode = decodeAs[Expired]
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
	var entries []commitEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, Errorf(EINVALID, "commit: %v", err)
	}
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
