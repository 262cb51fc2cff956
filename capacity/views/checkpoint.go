package views

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// Checkpoint format. A checkpoint is the folded state of every pool with the
// stream sequence it reflects, so a process can start from it and read only
// the stream after that sequence:
//
//	magic "capviews" | version byte | body | CRC-32C of magic, version and body (4 bytes, big endian)
//	body = position uvarint | pools uvarint | pool*
//	pool = key string | lastSeq uvarint | id, region, kind string | startsAt, endsAt time
//	       | capacity, overbook varint | status string | definition | version uvarint | updatedAt time
//	       | hasReservations byte | reservations uvarint | reservation*
//	definition  = pool, region, kind string | startsAt, endsAt time | capacity, overbook varint | at time
//	reservation = id string | quantity, ttl varint | status string | heldAt, expiresAt, updatedAt time | version uvarint
//	string = length uvarint | bytes
//	time   = 0 | unix seconds varint | nanoseconds uvarint     (UTC)
//	       | 1 | length uvarint | time.MarshalBinary             (any other location)
//
// Only the folded pools are stored; every index (start-time order,
// deadlines, reservation ids, board cells) is rebuilt from them on load, so
// an index can change without a new format version. A binary format rather
// than JSON: loading is the start time of a process, and this one decodes a
// reservation in a fraction of the time encoding/json takes.
const (
	checkpointMagic   = "capviews"
	checkpointVersion = 1
)

// ErrCheckpoint means a checkpoint could not be read: corrupt, truncated or
// of a version this build does not know. The models are unchanged.
var ErrCheckpoint = errors.New("views: unusable checkpoint")

// WriteCheckpoint writes the models' folded state to w and returns the
// stream sequence it reflects. It holds the read lock while it encodes:
// queries go on, Apply waits. Call it from the goroutine that applies
// events (the runner) so that no Apply is waiting meanwhile.
func (m *Models) WriteCheckpoint(w io.Writer) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	e := encoder{w: bw}
	e.raw([]byte(checkpointMagic))
	e.raw([]byte{checkpointVersion})
	e.uvarint(m.position)
	e.uvarint(uint64(len(m.pools)))
	for key, r := range m.pools {
		e.str(key)
		e.uvarint(r.lastSeq)
		e.pool(&r.pool)
	}
	if e.err == nil {
		e.err = bw.Flush()
	}
	if e.err != nil {
		return 0, fmt.Errorf("views: write checkpoint: %w", e.err)
	}
	if _, err := w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return 0, fmt.Errorf("views: write checkpoint: %w", err)
	}
	return m.position, nil
}

// ReadCheckpoint replaces the models' state with the checkpoint read from r
// (to its end) and returns the stream sequence it reflects. On any error,
// ErrCheckpoint for a checkpoint that does not decode, the models are left
// as they were. Board subscribers are dropped: their channels close and
// they read the board again.
func (m *Models) ReadCheckpoint(r io.Reader) (uint64, error) {
	// Read it whole first: a store that verifies a digest (the object
	// store) reports a mismatch only at the end, and decoding from memory
	// is several times faster than from a reader. The encoded form is a
	// fraction of the models' size in memory.
	data, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("views: read checkpoint: %w", err)
	}
	if len(data) < len(checkpointMagic)+1+4 || string(data[:len(checkpointMagic)]) != checkpointMagic {
		return 0, fmt.Errorf("%w: not a checkpoint", ErrCheckpoint)
	}
	if v := data[len(checkpointMagic)]; v != checkpointVersion {
		return 0, fmt.Errorf("%w: version %d, this build reads %d", ErrCheckpoint, v, checkpointVersion)
	}
	body, trailer := data[:len(data)-4], data[len(data)-4:]
	if got, sum := binary.BigEndian.Uint32(trailer), crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)); got != sum {
		return 0, fmt.Errorf("%w: checksum %08x, computed %08x", ErrCheckpoint, got, sum)
	}
	d := decoder{b: body[len(checkpointMagic)+1:], interned: make(map[string]string)}
	position := d.uvarint()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("%d pools in %d bytes", n, len(d.b))
	}
	pools := make(map[string]*row, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		key := d.str()
		r := &row{}
		r.lastSeq = d.uvarint()
		d.pool(&r.pool)
		if r.pool.ID == key {
			r.pool.ID, r.pool.Definition.Pool = key, key // one copy of the id
		}
		if d.err == nil && r.lastSeq > position {
			d.fail("pool %s at %d, after the position %d", key, r.lastSeq, position)
		}
		pools[key] = r
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the last pool", len(d.b))
	}
	if d.err != nil {
		return 0, fmt.Errorf("%w: %v", ErrCheckpoint, d.err)
	}
	for _, r := range pools {
		if err := r.pool.Recount(); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
	}
	m.restore(pools, position)
	return position, nil
}

// Reset empties the models, as New returns them. Board subscribers are dropped.
func (m *Models) Reset() { m.restore(make(map[string]*row), 0) }

// restore installs pools as the models' state at position and rebuilds
// every index from them.
func (m *Models) restore(pools map[string]*row, position uint64) {
	byStart := make([]*row, 0, len(pools))
	n := 0
	for _, r := range pools {
		n += len(r.pool.Reservations)
	}
	byID := make(map[string][]string, n)
	board := &Board{m: m, cells: make(map[cellKey]*Cell)}
	for _, key := range slices.Sorted(maps.Keys(pools)) { // sorted, so each byID list is
		r := pools[key]
		r.held, r.confirmed = 0, 0
		for id, res := range r.pool.Reservations {
			st := stateOf(res)
			h, c := st.units()
			r.held += h
			r.confirmed += c
			if st.held {
				r.deadlines = append(r.deadlines, deadline{at: st.expiresAt, id: id, quantity: st.quantity})
			}
			byID[id] = append(byID[id], key)
		}
		slices.SortFunc(r.deadlines, compareDeadline)
		r.gen = 1
		if r.pool.Defined() {
			r.start, r.indexed = r.pool.StartsAt.UnixNano(), true
			byStart = append(byStart, r)
		}
		board.update(r.lastSeq, r) // no subscribers: nothing is published
	}
	slices.SortFunc(byStart, func(x, y *row) int {
		if c := compareInt(x.start, y.start); c != 0 {
			return c
		}
		return compareString(x.pool.ID, y.pool.ID)
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pools, m.position = pools, position
	m.Availability.byStart = byStart
	m.Reservations.byID = byID
	m.Board.cells = board.cells
	for s := range m.Board.subs {
		delete(m.Board.subs, s)
		close(s.ch)
	}
}

// encoder writes the checkpoint format; the first error sticks.
type encoder struct {
	w   *bufio.Writer
	buf [binary.MaxVarintLen64]byte
	err error
}

func (e *encoder) raw(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *encoder) uvarint(v uint64) { e.raw(binary.AppendUvarint(e.buf[:0], v)) }
func (e *encoder) varint(v int64)   { e.raw(binary.AppendVarint(e.buf[:0], v)) }

func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

func (e *encoder) time(t time.Time) {
	if t.Location() == time.UTC {
		e.raw([]byte{0})
		e.varint(t.Unix())
		e.uvarint(uint64(t.Nanosecond()))
		return
	}
	b, err := t.MarshalBinary()
	if err != nil {
		if e.err == nil {
			e.err = err
		}
		return
	}
	e.raw([]byte{1})
	e.uvarint(uint64(len(b)))
	e.raw(b)
}

func (e *encoder) pool(p *capacity.Pool) {
	e.str(p.ID)
	e.str(p.Region)
	e.str(p.Kind)
	e.time(p.StartsAt)
	e.time(p.EndsAt)
	e.varint(int64(p.Capacity))
	e.varint(int64(p.Overbook))
	e.str(string(p.Status))
	d := &p.Definition
	e.str(d.Pool)
	e.str(d.Region)
	e.str(d.Kind)
	e.time(d.StartsAt)
	e.time(d.EndsAt)
	e.varint(int64(d.Capacity))
	e.varint(int64(d.Overbook))
	e.time(d.DefinedAt)
	e.uvarint(p.Version)
	e.time(p.UpdatedAt)
	if p.Reservations == nil {
		e.raw([]byte{0})
	} else {
		e.raw([]byte{1})
	}
	e.uvarint(uint64(len(p.Reservations)))
	for _, r := range p.Reservations {
		e.str(r.ID)
		e.varint(int64(r.Quantity))
		e.varint(int64(r.TTL))
		e.str(string(r.Status))
		e.time(r.HeldAt)
		e.time(r.ExpiresAt)
		e.time(r.UpdatedAt)
		e.uvarint(r.Version)
	}
}

// decoder reads the checkpoint format from memory; the first error sticks.
type decoder struct {
	b        []byte
	err      error
	interned map[string]string // regions, kinds, statuses: few values, many pools
}

var errTruncated = errors.New("truncated")

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) raw(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = errTruncated
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int {
	v := d.varint()
	if int64(int(v)) != v {
		d.fail("integer %d out of range", v)
	}
	return int(v)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	return d.raw(int(n))
}

func (d *decoder) str() string { return string(d.bytes()) }

// internedStr reads a string of a small set (region, kind, status) and
// returns one shared copy of each value.
func (d *decoder) internedStr() string {
	b := d.bytes()
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.interned) < 1<<16 {
		d.interned[s] = s
	}
	return s
}

func (d *decoder) time() time.Time {
	switch tag := d.raw(1); {
	case d.err != nil:
		return time.Time{}
	case tag[0] == 0:
		sec, nsec := d.varint(), d.uvarint()
		if nsec >= 1e9 {
			d.fail("nanoseconds %d", nsec)
		}
		return time.Unix(sec, int64(nsec)).UTC()
	case tag[0] == 1:
		var t time.Time
		if b := d.bytes(); d.err == nil {
			if err := t.UnmarshalBinary(b); err != nil {
				d.fail("time: %v", err)
			}
		}
		return t
	default:
		d.fail("time tag %d", tag[0])
		return time.Time{}
	}
}

func (d *decoder) pool(p *capacity.Pool) {
	p.ID = d.str()
	p.Region = d.internedStr()
	p.Kind = d.internedStr()
	p.StartsAt = d.time()
	p.EndsAt = d.time()
	p.Capacity = d.int()
	p.Overbook = d.int()
	p.Status = capacity.Status(d.internedStr())
	def := &p.Definition
	def.Pool = d.str()
	def.Region = d.internedStr()
	def.Kind = d.internedStr()
	def.StartsAt = d.time()
	def.EndsAt = d.time()
	def.Capacity = d.int()
	def.Overbook = d.int()
	def.DefinedAt = d.time()
	p.Version = d.uvarint()
	p.UpdatedAt = d.time()
	hasMap := d.raw(1)
	n := d.uvarint()
	if d.err != nil {
		return
	}
	if n > uint64(len(d.b)) {
		d.fail("%d reservations in %d bytes", n, len(d.b))
		return
	}
	if hasMap[0] == 1 {
		p.Reservations = make(map[string]*capacity.Reservation, n)
	} else if n > 0 {
		d.fail("reservations without a map")
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		r := &capacity.Reservation{}
		r.ID = d.str()
		r.Quantity = d.int()
		r.TTL = time.Duration(d.varint())
		r.Status = capacity.ReservationStatus(d.internedStr())
		r.HeldAt = d.time()
		r.ExpiresAt = d.time()
		r.UpdatedAt = d.time()
		r.Version = d.uvarint()
		p.Reservations[r.ID] = r
	}
}
