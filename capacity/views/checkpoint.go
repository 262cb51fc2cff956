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

	"github.com/capacityd/capacityd/capacity"
)

// Checkpoint format. A checkpoint is the folded state of every pool with the
// stream sequence it reflects, so a process can start from it and read only
// the stream after that sequence:
//
//	magic "capviews" | version byte | body | CRC-32C of magic, version and body (4 bytes, big endian)
//	body    = position uvarint | pools uvarint | pool* | retired uvarint | retired*
//	pool    = key string | lastSeq uvarint | snapshot string (capacity.Pool.MarshalSnapshot)
//	retired = reservation id string | pools uvarint | pool key string*
//	string  = length uvarint | bytes
//
// Each pool is stored in the pool's own snapshot form, the one place that
// knows every field of a pool and its reservations (booking items, the units
// held before a partial confirmation, retired reservations' records). A
// retired reservation keeps only a hash of its id, so the ids the lookup by
// id still knows for retired reservations are stored beside the pools.
// Every other index (start-time order, deadlines, board cells) is rebuilt
// from the pools on load, so an index can change without a new format
// version. Version 1 stored pools field by field and lost those fields; a
// version 1 checkpoint is refused (the models rebuild from the stream).
const (
	checkpointMagic   = "capviews"
	checkpointVersion = 2
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
	retired := m.Reservations.retiredIDs()
	e.uvarint(uint64(len(retired)))
	for id, pools := range retired {
		e.str(id)
		e.uvarint(uint64(len(pools)))
		for _, key := range pools {
			e.str(key)
		}
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
	d := decoder{b: body[len(checkpointMagic)+1:]}
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
		if d.err == nil && r.lastSeq > position {
			d.fail("pool %s at %d, after the position %d", key, r.lastSeq, position)
		}
		pools[key] = r
	}
	retired := make(map[string][]string)
	n = d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		id := d.str()
		k := d.uvarint()
		if d.err == nil && k > uint64(len(d.b)) {
			d.fail("%d pools in %d bytes", k, len(d.b))
		}
		for j := uint64(0); j < k && d.err == nil; j++ {
			retired[id] = append(retired[id], d.str())
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the retired reservations", len(d.b))
	}
	if d.err != nil {
		return 0, fmt.Errorf("%w: %v", ErrCheckpoint, d.err)
	}
	for _, r := range pools {
		if err := r.pool.Recount(); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
	}
	m.restore(pools, retired, position)
	return position, nil
}

// Reset empties the models, as New returns them. Board subscribers are dropped.
func (m *Models) Reset() { m.restore(make(map[string]*row), nil, 0) }

// restore installs pools as the models' state at position and rebuilds
// every index from them; retired adds the ids of retired reservations, by
// pool, to the index by id.
func (m *Models) restore(pools map[string]*row, retired map[string][]string, position uint64) {
	byStart := make([]*row, 0, len(pools))
	n := 0
	for _, r := range pools {
		n += len(r.pool.Reservations)
	}
	byID := newPoolsByID(n)
	held := make(map[string]*row)
	names := make(map[string]string)
	name := func(s string) string {
		if c, ok := names[s]; ok {
			return c
		}
		names[s] = s
		return s
	}
	board := &Board{m: m, cells: make(map[cellKey]*Cell)}
	for _, key := range slices.Sorted(maps.Keys(pools)) { // in order, so a rebuild is deterministic
		r := pools[key]
		if r.pool.ID == key {
			r.pool.ID = key // one copy of the id (Models.ApplyTraced)
		}
		r.pool.Region, r.pool.Kind = name(r.pool.Region), name(r.pool.Kind)
		if _, live := r.pool.NextDeadline(); live {
			held[key] = r
		}
		for id := range r.pool.Reservations {
			if byID.add(id, key) {
				r.indexedIDs++
			}
		}
		if r.pool.Defined() {
			r.start = r.pool.StartsAt.UnixNano()
			byStart = append(byStart, r)
		}
		board.update(r.lastSeq, r) // no subscribers: nothing is published
	}
	for id, keys := range retired {
		for _, key := range keys {
			if r := pools[key]; r != nil && r.pool.Reservations[id] == nil && byID.add(id, key) {
				r.indexedIDs++
			}
		}
	}
	slices.SortFunc(byStart, func(x, y *row) int {
		if c := compareInt(x.start, y.start); c != 0 {
			return c
		}
		return compareString(x.pool.ID, y.pool.ID)
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pools, m.held, m.names, m.position = pools, held, names, position
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

// pool writes the pool in its snapshot form.
func (e *encoder) pool(p *capacity.Pool) {
	b, err := p.MarshalSnapshot()
	if err != nil {
		if e.err == nil {
			e.err = err
		}
		return
	}
	e.uvarint(uint64(len(b)))
	e.raw(b)
}

// decoder reads the checkpoint format from memory; the first error sticks.
type decoder struct {
	b   []byte
	err error
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

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	return d.raw(int(n))
}

func (d *decoder) str() string { return string(d.bytes()) }

// pool reads a pool in its snapshot form.
func (d *decoder) pool(p *capacity.Pool) {
	b := d.bytes()
	if d.err != nil {
		return
	}
	q, err := capacity.UnmarshalSnapshot(b)
	if err != nil {
		d.fail("%v", err)
		return
	}
	*p = *q
}
