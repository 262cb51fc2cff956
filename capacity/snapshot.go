package capacity

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// A snapshot is binary: a pool with hundreds of thousands of reservations
// must load in tens of milliseconds, and encoding/json spends that on
// validating and unquoting alone. Layout (all integers varints):
//
//	"CPS3"                      magic and format version
//	head                        the pool without its reservations
//	count, reservation...       sorted by id
//	len, retired records        as in retiredSet (sorted by key)
//
// A reservation is as in version 2 but for its status, one byte (a
// string only for a status unknown here), and its deadline and last update,
// stored less the time held (and, the deadline, the TTL): nearly always a
// byte or a few instead of 9 each.
//
// The head is: id, region, kind, status, starts at, ends at, updated at,
// defined at (each time its MarshalBinary form as a string, which keeps
// its zone offset as JSON did), capacity, overbook, defined capacity,
// defined overbook, version. Version 2 ("CPS2") had the head as JSON: an
// idle pool was 444 bytes and most of its encoding and decoding time, which
// a read model's checkpoint pays for each of a million pools. It is still
// read.
//
// A reservation is: id, quantity, held quantity, ttl (ns), status, held at,
// expires at, updated at (unix ns; 0 for a zero time), version, booking id,
// item count, items (pool, quantity). Strings are a length and the bytes.
// UnmarshalSnapshot still reads the JSON snapshots written before.
var (
	snapshotMagic   = []byte("CPS3")
	snapshotMagicV2 = []byte("CPS2") // JSON head
)

// MarshalSnapshot encodes the pool for the snapshot store. The same pool
// always encodes to the same bytes.
func (p *Pool) MarshalSnapshot() ([]byte, error) { return p.AppendSnapshot(nil) }

// AppendSnapshot appends the pool's MarshalSnapshot encoding to dst, so an
// encoder of many pools (a read model's checkpoint) reuses one buffer.
func (p *Pool) AppendSnapshot(dst []byte) ([]byte, error) {
	// Sorted with their pointers: looking each id up again in the map cost
	// as much as the sort (a pool of 70,000 holds).
	type entry struct {
		id string
		r  *Reservation
	}
	sorted := make([]entry, 0, len(p.Reservations))
	for id, r := range p.Reservations {
		sorted = append(sorted, entry{id, r})
	}
	slices.SortFunc(sorted, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	buf := slices.Grow(dst, 160+len(sorted)*48+p.retired.len()*32)
	buf = append(buf, snapshotMagic...)
	def := p.Definition()
	for _, s := range []string{p.ID, p.Region, p.Kind, string(p.Status)} {
		buf = appendBytes(buf, []byte(s))
	}
	for _, t := range []time.Time{p.StartsAt, p.EndsAt, p.UpdatedAt, def.DefinedAt} {
		n := len(buf)
		buf = append(buf, 0) // the length, below: at most 16 bytes
		var err error
		if buf, err = t.AppendBinary(buf); err != nil {
			return nil, err
		}
		buf[n] = byte(len(buf) - n - 1)
	}
	for _, v := range []int{p.Capacity, p.Overbook, def.Capacity, def.Overbook} {
		buf = binary.AppendVarint(buf, int64(v))
	}
	buf = binary.AppendUvarint(buf, p.Version)
	buf = binary.AppendUvarint(buf, uint64(len(sorted)))
	for _, e := range sorted {
		r := e.r
		buf = appendBytes(buf, []byte(e.id))
		buf = binary.AppendVarint(buf, int64(r.Quantity))
		buf = binary.AppendVarint(buf, int64(r.HeldQuantity))
		buf = binary.AppendVarint(buf, int64(r.TTL))
		if code := slices.Index(statusCodes, r.Status); code >= 0 {
			buf = append(buf, byte(code))
		} else {
			buf = append(buf, byte(len(statusCodes)))
			buf = appendBytes(buf, []byte(r.Status))
		}
		held := unixNano(r.HeldAt)
		buf = binary.AppendVarint(buf, held)
		buf = binary.AppendVarint(buf, unixNano(r.ExpiresAt)-held-int64(r.TTL))
		buf = binary.AppendVarint(buf, unixNano(r.UpdatedAt)-held)
		buf = binary.AppendUvarint(buf, r.Version)
		buf = appendBytes(buf, []byte(r.Booking))
		buf = binary.AppendUvarint(buf, uint64(len(r.Items)))
		for _, it := range r.Items {
			buf = appendBytes(buf, []byte(it.Pool))
			buf = binary.AppendVarint(buf, int64(it.Quantity))
		}
	}
	buf = appendBytes(buf, p.retired.pack())
	return buf, nil
}

// UnmarshalSnapshot decodes a pool written by MarshalSnapshot (or by the
// JSON encoding of earlier versions) and recounts its derived totals, so a
// snapshot never carries a count of its own that could disagree with its
// reservations.
func UnmarshalSnapshot(data []byte) (*Pool, error) {
	var p Pool
	if v3, v2 := bytes.HasPrefix(data, snapshotMagic), bytes.HasPrefix(data, snapshotMagicV2); v3 || v2 {
		if err := p.decodeBinary(data[len(snapshotMagic):], v3); err != nil {
			return nil, Errorf(EINVALID, "snapshot: %v", err)
		}
	} else if err := json.Unmarshal(data, &p); err != nil {
		return nil, Errorf(EINVALID, "snapshot: %v", err)
	}
	if len(p.Reservations) == 0 {
		p.Reservations = nil // allocated with the first hold (Evolve)
	}
	for _, r := range p.Reservations {
		if r == nil {
			return nil, Errorf(EINVALID, "snapshot: null reservation")
		}
		p.count(r, +1)
	}
	p.rebuildDeadlines()
	p.rebuildFinished()
	return &p, nil
}

// decodeBinary decodes a snapshot after its magic, of version 3 or 2.
func (p *Pool) decodeBinary(data []byte, v3 bool) error {
	d := decoder{buf: data}
	if v3 {
		if err := d.head(p); err != nil {
			return err
		}
	} else {
		meta := d.bytes()
		if d.err != nil {
			return d.err
		}
		var head poolJSON
		if err := json.Unmarshal(meta, &head); err != nil {
			return err
		}
		p.fromJSON(&head)
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)) {
		return errTruncated
	}
	if n > 0 {
		p.Reservations = make(map[string]*Reservation, n)
	}
	for range n {
		r := &Reservation{ID: d.string()}
		r.Quantity, r.HeldQuantity = int(d.varint()), int(d.varint())
		r.TTL = time.Duration(d.varint())
		if v3 {
			d.reservationV3(r)
		} else {
			r.Status = ReservationStatus(d.string())
			r.HeldAt, r.ExpiresAt, r.UpdatedAt = fromUnixNano(d.varint()), fromUnixNano(d.varint()), fromUnixNano(d.varint())
		}
		r.Version = d.uvarint()
		r.Booking = d.string()
		if items := d.uvarint(); items > 0 && d.err == nil {
			if items > uint64(len(d.buf)) {
				return errTruncated
			}
			r.Items = make([]BookingItem, items)
			for i := range r.Items {
				r.Items[i] = BookingItem{Pool: d.string(), Quantity: int(d.varint())}
			}
		}
		if d.err != nil {
			return d.err
		}
		p.Reservations[r.ID] = r
	}
	retired := d.bytes()
	if d.err != nil {
		return d.err
	}
	if len(d.buf) != 0 {
		return Errorf(EINVALID, "%d bytes after the end", len(d.buf))
	}
	set, err := unpackRetired(retired)
	if err != nil {
		return err
	}
	p.retired = set
	return nil
}

// statusCodes are the reservation statuses version 3 writes as one byte,
// its index here; the byte len(statusCodes) is followed by the status as a
// string.
var statusCodes = []ReservationStatus{StatusHeld, StatusConfirmed, StatusReleased, StatusExpired}

// reservationV3 reads a version 3 reservation's status and times: the
// deadline is stored less the time held and the TTL, the last update less
// the time held, both nearly always a byte or a few.
func (d *decoder) reservationV3(r *Reservation) {
	if d.err != nil || len(d.buf) == 0 {
		d.err = errTruncated
		return
	}
	code := int(d.buf[0])
	d.buf = d.buf[1:]
	switch {
	case code < len(statusCodes):
		r.Status = statusCodes[code]
	case code == len(statusCodes):
		r.Status = ReservationStatus(d.string())
	default:
		d.err = Errorf(EINVALID, "reservation status %d", code)
		return
	}
	held := d.varint()
	expires, updated := d.varint()+held+int64(r.TTL), d.varint()+held
	r.HeldAt, r.ExpiresAt, r.UpdatedAt = fromUnixNano(held), fromUnixNano(expires), fromUnixNano(updated)
}

// head reads a version 3 head into p.
func (d *decoder) head(p *Pool) error {
	p.ID, p.Region, p.Kind = d.string(), d.string(), d.string()
	switch status := d.bytes(); string(status) {
	case string(Open):
		p.Status = Open // no copy of its own in each of a million pools
	case string(Closed):
		p.Status = Closed
	default:
		p.Status = Status(status)
	}
	var times [4]time.Time
	for i := range times {
		b := d.bytes()
		if d.err != nil {
			return d.err
		}
		if err := times[i].UnmarshalBinary(b); err != nil {
			return err
		}
	}
	p.StartsAt, p.EndsAt, p.UpdatedAt, p.definedAt = times[0], times[1], times[2], times[3]
	p.Capacity, p.Overbook = int(d.varint()), int(d.varint())
	p.definedCapacity, p.definedOverbook = int(d.varint()), int(d.varint())
	p.Version = d.uvarint()
	return d.err
}

var errTruncated = Errorf(EINVALID, "truncated")

// decoder reads varints and strings, remembering the first error.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.err = errTruncated
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) string() string {
	var b strings.Builder
	b.Write(d.bytes())
	return b.String()
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

// unixNano is t in unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
