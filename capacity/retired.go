package capacity

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"
)

// RetainFinished is how long, in the pool's own recorded time, a released or
// expired reservation is kept whole after it finished. After that it is
// retired: only a compact record of it stays (retiredReservation, ~40 bytes
// in a snapshot against ~250 for the reservation), keyed by a 64-bit hash of
// its id. That is enough for what decisions and clients need of a finished
// reservation: a retried hold with the same id is still recognised (same
// quantity and TTL: answered as done; other: conflict), and a read, confirm
// or release of it answers with its status, quantity, TTL, deadline and
// version. What a retired reservation no longer carries: its id's spelling
// (the caller has it), held_at, updated_at and a booking's item list.
//
// So a pool's memory and snapshot grow with its live and recently finished
// reservations, and by a small record for each older one: a pool with
// 200,000 reservations, nearly all finished long ago, snapshots in a few MB.
const RetainFinished = 24 * time.Hour

// retainFinished is RetainFinished; tests shorten it (export_test.go).
var retainFinished = RetainFinished

// retiredReservation is what stays of a finished reservation once retired.
type retiredReservation struct {
	quantity, heldQuantity int
	ttl                    time.Duration
	status                 ReservationStatus // released or expired
	expiresAt              time.Time
	version                uint64
	booking                bool // it was a booking's part (its booking id is its id)
}

// finishedRef is a finished reservation waiting to be retired, in the order
// they finished (the pool's time only moves forward).
type finishedRef struct {
	at time.Time
	id string
}

// idHash is the key of a retired reservation.
func idHash(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

// Reservation returns the reservation id: the pool's own record while it is
// live or recently finished, a copy rebuilt from its compact record once it
// is retired, nil if the pool never had it. Decisions and reads go through
// it; only Evolve changes p.Reservations.
func (p *Pool) Reservation(id string) *Reservation {
	if r := p.Reservations[id]; r != nil {
		return r
	}
	rr, ok := p.retired.get(idHash(id))
	if !ok {
		return nil
	}
	r := &Reservation{
		ID: id, Quantity: rr.quantity, TTL: rr.ttl, Status: rr.status,
		ExpiresAt: rr.expiresAt, Version: rr.version, HeldQuantity: rr.heldQuantity,
	}
	if rr.booking {
		r.Booking = id
	}
	return r
}

// noteFinished queues a reservation that just finished for retirement.
func (p *Pool) noteFinished(id string, at time.Time) {
	p.finished = append(p.finished, finishedRef{at: at, id: id})
}

// retireFinished retires the reservations finished RetainFinished or more
// before the pool's time. It is part of Evolve, so a replay retires exactly
// what the live pool did.
func (p *Pool) retireFinished() {
	n := 0
	for _, f := range p.finished[p.finishedHead:] {
		if f.at.Add(retainFinished).After(p.UpdatedAt) {
			break
		}
		n++
		r := p.Reservations[f.id]
		if r == nil || !r.UpdatedAt.Equal(f.at) || (r.Status != StatusReleased && r.Status != StatusExpired) {
			continue // moved on since (a history Decide never writes)
		}
		p.retired.put(idHash(f.id), retiredReservation{
			quantity: r.Quantity, heldQuantity: r.HeldQuantity, ttl: r.TTL, status: r.Status,
			expiresAt: r.ExpiresAt, version: r.Version, booking: r.Booking != "",
		})
		delete(p.Reservations, f.id)
	}
	p.finishedHead += n
	if p.finishedHead > 64 && p.finishedHead > len(p.finished)/2 {
		// Drop the retired prefix now and then: amortised O(1) an event.
		p.finished = slices.Delete(p.finished, 0, p.finishedHead)
		p.finishedHead = 0
	}
}

// rebuildFinished rebuilds the retirement queue of a pool decoded from a
// snapshot: its finished reservations by the time they finished.
func (p *Pool) rebuildFinished() {
	p.finished, p.finishedHead = p.finished[:0], 0
	for id, r := range p.Reservations {
		if r.Status == StatusReleased || r.Status == StatusExpired {
			p.finished = append(p.finished, finishedRef{at: r.UpdatedAt, id: id})
		}
	}
	slices.SortFunc(p.finished, func(a, b finishedRef) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
}

// RetiredCount returns how many reservations the pool has retired.
func (p *Pool) RetiredCount() int { return p.retired.len() }

// retiredSet is the compact records of a pool's retired reservations: those
// loaded from a snapshot in a slice sorted by key (decoded without hashing,
// never changed afterwards, so copies of the pool share it), and those
// retired since in a map.
//
// In a snapshot it is packed records, sorted by key: key (8 bytes), then
// uvarints quantity, held quantity, ttl (ns), status (0 released, 1
// expired; +2 for a booking's part), deadline (unix ns, zigzag varint) and
// version.
type retiredSet struct {
	sorted []retiredEntry
	recent map[uint64]retiredReservation
}

type retiredEntry struct {
	key uint64
	retiredReservation
}

func (s *retiredSet) len() int { return len(s.sorted) + len(s.recent) }

func (s *retiredSet) get(key uint64) (retiredReservation, bool) {
	if r, ok := s.recent[key]; ok {
		return r, true
	}
	i, ok := slices.BinarySearchFunc(s.sorted, key, func(e retiredEntry, k uint64) int {
		switch {
		case e.key < k:
			return -1
		case e.key > k:
			return 1
		}
		return 0
	})
	if !ok {
		return retiredReservation{}, false
	}
	return s.sorted[i].retiredReservation, true
}

func (s *retiredSet) put(key uint64, r retiredReservation) {
	if s.recent == nil {
		s.recent = make(map[uint64]retiredReservation)
	}
	s.recent[key] = r
}

// clone returns a copy sharing the immutable sorted part.
func (s *retiredSet) clone() retiredSet {
	c := retiredSet{sorted: s.sorted}
	if len(s.recent) > 0 {
		c.recent = maps.Clone(s.recent)
	}
	return c
}

// pack returns the packed records, sorted by key.
func (s *retiredSet) pack() []byte {
	recent := make([]retiredEntry, 0, len(s.recent))
	for k, v := range s.recent {
		recent = append(recent, retiredEntry{k, v})
	}
	slices.SortFunc(recent, func(a, b retiredEntry) int { return cmp.Compare(a.key, b.key) })
	buf := make([]byte, 0, s.len()*32)
	i, j := 0, 0
	for i < len(s.sorted) || j < len(recent) {
		var e retiredEntry
		if j == len(recent) || i < len(s.sorted) && s.sorted[i].key < recent[j].key {
			e, i = s.sorted[i], i+1
		} else {
			if i < len(s.sorted) && s.sorted[i].key == recent[j].key {
				i++ // the same key retired again: the newer record wins
			}
			e, j = recent[j], j+1
		}
		buf = binary.BigEndian.AppendUint64(buf, e.key)
		buf = binary.AppendUvarint(buf, uint64(e.quantity))
		buf = binary.AppendUvarint(buf, uint64(e.heldQuantity))
		buf = binary.AppendUvarint(buf, uint64(e.ttl))
		status := uint64(0)
		if e.status == StatusExpired {
			status = 1
		}
		if e.booking {
			status += 2
		}
		buf = binary.AppendUvarint(buf, status)
		buf = binary.AppendVarint(buf, unixNano(e.expiresAt))
		buf = binary.AppendUvarint(buf, e.version)
	}
	return buf
}

// unpackRetired reads what pack wrote.
func unpackRetired(buf []byte) (retiredSet, error) {
	var out retiredSet
	d := decoder{buf: buf}
	for len(d.buf) > 0 {
		if len(d.buf) < 8 {
			return retiredSet{}, Errorf(EINVALID, "retired reservations: truncated")
		}
		k := binary.BigEndian.Uint64(d.buf)
		d.buf = d.buf[8:]
		e := retiredEntry{key: k, retiredReservation: retiredReservation{
			quantity: int(d.uvarint()), heldQuantity: int(d.uvarint()), ttl: time.Duration(d.uvarint()),
			status: StatusReleased,
		}}
		status := d.uvarint()
		e.expiresAt, e.version = fromUnixNano(d.varint()), d.uvarint()
		if d.err != nil {
			return retiredSet{}, Errorf(EINVALID, "retired reservations: %v", d.err)
		}
		if n := len(out.sorted); n > 0 && out.sorted[n-1].key >= k {
			return retiredSet{}, Errorf(EINVALID, "retired reservations: not sorted")
		}
		if status&1 != 0 {
			e.status = StatusExpired
		}
		e.booking = status&2 != 0
		if out.sorted == nil {
			out.sorted = make([]retiredEntry, 0, len(buf)/24)
		}
		out.sorted = append(out.sorted, e)
	}
	return out, nil
}
