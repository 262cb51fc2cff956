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
//	"CPS2"                      magic and format version
//	len, JSON                   the pool without its reservations (small)
//	count, reservation...       sorted by id
//	len, retired records        as in retiredSet (sorted by key)
//
// A reservation is: id, quantity, held quantity, ttl (ns), status, held at,
// expires at, updated at (unix ns; 0 for a zero time), version, booking id,
// item count, items (pool, quantity). Strings are a length and the bytes.
// UnmarshalSnapshot still reads the JSON snapshots written before.
var snapshotMagic = []byte("CPS2")

// MarshalSnapshot encodes the pool for the snapshot store. The same pool
// always encodes to the same bytes.
func (p *Pool) MarshalSnapshot() ([]byte, error) { return p.AppendSnapshot(nil) }

// AppendSnapshot appends the pool's MarshalSnapshot encoding to dst, so an
// encoder of many pools (a read model's checkpoint) reuses one buffer.
func (p *Pool) AppendSnapshot(dst []byte) ([]byte, error) {
	head := p.toJSON()
	head.Reservations = nil
	meta, err := json.Marshal(&head)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(p.Reservations))
	for id := range p.Reservations {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	buf := slices.Grow(dst, len(meta)+len(ids)*96+p.retired.len()*32+16)
	buf = append(buf, snapshotMagic...)
	buf = appendBytes(buf, meta)
	buf = binary.AppendUvarint(buf, uint64(len(ids)))
	for _, id := range ids {
		r := p.Reservations[id]
		buf = appendBytes(buf, []byte(id))
		buf = binary.AppendVarint(buf, int64(r.Quantity))
		buf = binary.AppendVarint(buf, int64(r.HeldQuantity))
		buf = binary.AppendVarint(buf, int64(r.TTL))
		buf = appendBytes(buf, []byte(r.Status))
		for _, t := range []time.Time{r.HeldAt, r.ExpiresAt, r.UpdatedAt} {
			buf = binary.AppendVarint(buf, unixNano(t))
		}
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
	if bytes.HasPrefix(data, snapshotMagic) {
		if err := p.decodeBinary(data[len(snapshotMagic):]); err != nil {
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

func (p *Pool) decodeBinary(data []byte) error {
	d := decoder{buf: data}
	meta := d.bytes()
	if d.err != nil {
		return d.err
	}
	var head poolJSON
	if err := json.Unmarshal(meta, &head); err != nil {
		return err
	}
	p.fromJSON(&head)
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
		r.Status = ReservationStatus(d.string())
		r.HeldAt, r.ExpiresAt, r.UpdatedAt = fromUnixNano(d.varint()), fromUnixNano(d.varint()), fromUnixNano(d.varint())
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
