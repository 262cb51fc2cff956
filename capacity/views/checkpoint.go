package views

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// Checkpoint format. A checkpoint is the folded state of every pool with the
// stream sequence it reflects, so a process can start from it and read only
// the stream after that sequence:
//
//	magic "capviews" | version byte | body | CRC-32C of magic, version and body (4 bytes, big endian)
//	body    = position uvarint | pools uvarint | pool* | end uvarint | ids uvarint | id*
//	pool    = key string | lastSeq uvarint | id | region string | kind string | status string
//	          | startsAt time | endsAt time | capacity varint | overbook varint | version uvarint
//	          | held varint | confirmed varint | holds uvarint | (deadline varint | quantity varint)*
//	          | snapshot string (capacity.Pool.MarshalSnapshot)
//	id      = idHash of a reservation id (8 bytes, big endian) | pool uvarint (its place among the pools)
//	id      = 0 (not defined) | 1 (the key) | 2, string (the pool's id, another)
//	time    = string (time.Time.MarshalBinary)
//	string  = length uvarint | bytes
//
// Each pool is stored in the pool's own snapshot form, the one place that
// knows every field of a pool and its reservations (booking items, the units
// held before a partial confirmation, retired reservations' records),
// after a head of what queries read without it: the view's fields, the
// units held and confirmed and the live holds' deadlines. A start decodes
// the heads and keeps a large pool's snapshot encoded until an event or a
// lookup touches it (lazy.go), so its cost follows the pools, not the
// reservations their history left. The reservation index by id is stored
// as it is kept after a load, id hashes sorted with their pool (poolsByID),
// so a start inserts nothing per reservation either; the hashes also cover
// retired reservations, whose pool keeps only a hash of the id. Every other
// index (start-time order, deadlines, board cells) is rebuilt from the
// heads on load, so an index can change without a new format version.
//
// A checkpoint is fuzzy (checkpoint_write.go): written while events are
// applied, it holds every pool of the models at position P0 (the position
// above), each as of its own lastSeq, at or after P0's commits and at or
// below end, the models' position when the writing ended; the replay from
// P0+1 brings each pool up to date and adds the pools made after P0.
// Version 3 (no end: each pool at or below the position, written under
// the read lock throughout) is read as well, as a checkpoint whose end is
// its position. Versions 1 and 2 (every pool decoded at load, ids as
// strings) are refused: the models rebuild from the stream.
const (
	checkpointMagic   = "capviews"
	checkpointVersion = 4
)

// lazyBytes is the snapshot size above which a loaded pool stays encoded
// until touched: an idle pool's snapshot (about 110 bytes) is decoded at
// once, which costs about what keeping it would (a body and its bytes),
// and a pool with a few reservations costs microseconds. Tests move it.
var lazyBytes = 1024

// ErrCheckpoint means a checkpoint could not be read: corrupt, truncated or
// of a version this build does not know. The models are unchanged.
var ErrCheckpoint = errors.New("views: unusable checkpoint")

// ReadCheckpoint replaces the models' state with the checkpoint read from r
// (to its end) and returns the stream sequence it reflects. On any error,
// ErrCheckpoint for a checkpoint that does not decode, the models are left
// as they were. Board subscribers are dropped: their channels close and
// they read the board again. A reader with a Bytes method (bytes.Buffer,
// what projection loads an object into) hands over its buffer, which the
// models then keep (large pools' snapshots stay in it until decoded); one
// with a Len method (bytes.Reader) has the buffer sized once.
func (m *Models) ReadCheckpoint(r io.Reader) (uint64, error) {
	// Read it whole first: a store that verifies a digest (the object
	// store) reports a mismatch only at the end, and decoding from memory
	// is several times faster than from a reader. The large pools'
	// snapshots stay in this buffer until they are decoded.
	var data []byte
	var err error
	if b, ok := r.(interface{ Bytes() []byte }); ok {
		data = b.Bytes() // a buffer already whole (*bytes.Buffer): kept, not copied
	} else if s, ok := r.(interface{ Len() int }); ok {
		data = make([]byte, s.Len())
		if _, err = io.ReadFull(r, data); err == nil {
			// To the end: the object store checks its digest there.
			var rest []byte
			if rest, err = io.ReadAll(r); len(rest) > 0 {
				data = append(data, rest...)
			}
		}
	} else {
		data, err = io.ReadAll(r)
	}
	if err != nil {
		return 0, fmt.Errorf("views: read checkpoint: %w", err)
	}
	if len(data) < len(checkpointMagic)+1+4 || string(data[:len(checkpointMagic)]) != checkpointMagic {
		return 0, fmt.Errorf("%w: not a checkpoint", ErrCheckpoint)
	}
	version := data[len(checkpointMagic)]
	if version != checkpointVersion && version != 3 {
		return 0, fmt.Errorf("%w: version %d, this build reads 3 and %d", ErrCheckpoint, version, checkpointVersion)
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
	keys := make([]string, 0, n) // by place, for the index
	names := make(map[string]string)
	name := func(b []byte) string {
		if s, ok := names[string(b)]; ok {
			return s
		}
		s := string(b)
		names[s] = s
		return s
	}
	var latest string // the pool at the highest lastSeq, latestSeq
	var latestSeq uint64
	for i := uint64(0); i < n && d.err == nil; i++ {
		key := d.str()
		r := d.row(key, name)
		if _, dup := pools[key]; dup && d.err == nil {
			d.fail("pool %s twice", key)
		}
		if r.lastSeq > latestSeq {
			latest, latestSeq = key, r.lastSeq
		}
		pools[key] = r
		keys = append(keys, key)
	}
	end := position
	if version >= 4 {
		if end = d.uvarint(); d.err == nil && end < position {
			d.fail("end %d before the position %d", end, position)
		}
	}
	if latestSeq > end && d.err == nil {
		d.fail("pool %s at %d, after the checkpoint's end %d", latest, latestSeq, end)
	}
	loaded := d.ids(keys)
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the reservation ids", len(d.b))
	}
	if d.err != nil {
		return 0, fmt.Errorf("%w: %v", ErrCheckpoint, d.err)
	}
	m.restore(pools, loaded, position)
	return position, nil
}

// row reads one pool's head and snapshot: decoded at once if small, kept
// as a body otherwise.
func (d *decoder) row(key string, name func([]byte) string) *row {
	r := &row{}
	r.lastSeq = d.uvarint()
	id := ""
	switch d.uvarint() {
	case 0:
	case 1:
		id = key // one copy of the id (Models.ApplyTraced)
	case 2:
		id = d.str()
	default:
		d.fail("pool %s: bad id", key)
	}
	region, kind, status := name(d.bytes()), name(d.bytes()), capacity.Status(name(d.bytes()))
	startsAt, endsAt := d.time(), d.time()
	capa, overbook, version := int(d.varint()), int(d.varint()), d.uvarint()
	held, confirmed := int(d.varint()), int(d.varint())
	nholds := d.uvarint()
	if d.err == nil && nholds > uint64(len(d.b)) {
		d.fail("%d holds in %d bytes", nholds, len(d.b))
	}
	var holds []liveHold
	if nholds > 0 && d.err == nil {
		holds = make([]liveHold, nholds)
		for i := range holds {
			holds[i] = liveHold{at: d.varint(), quantity: int(d.varint())}
			if i > 0 && d.err == nil && holds[i].at < holds[i-1].at {
				d.fail("pool %s: holds not sorted", key)
			}
		}
	}
	raw := d.bytes()
	if d.err != nil {
		return r
	}
	if len(raw) <= lazyBytes {
		p, err := capacity.UnmarshalSnapshot(raw)
		if err != nil {
			d.fail("pool %s: %v", key, err)
			return r
		}
		r.pool = *p
	} else {
		r.body = &body{raw: raw, held: held, confirmed: confirmed, holds: holds}
		r.pool = capacity.Pool{Region: region, Kind: kind, Status: status, StartsAt: startsAt, EndsAt: endsAt,
			Capacity: capa, Overbook: overbook, Version: version}
	}
	r.pool.ID, r.pool.Region, r.pool.Kind = id, region, kind
	return r
}

// ids reads the reservation index of a checkpoint whose pools are keys.
func (d *decoder) ids(keys []string) loadedIDs {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b))/9 {
		d.fail("%d reservation ids in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return loadedIDs{}
	}
	l := loadedIDs{hashes: make([]uint64, n), pools: make([]uint32, n), keys: keys}
	for i := range l.hashes {
		b := d.raw(8)
		if d.err != nil {
			return loadedIDs{}
		}
		l.hashes[i] = binary.BigEndian.Uint64(b)
		pool := d.uvarint()
		if d.err == nil && pool >= uint64(len(keys)) {
			d.fail("reservation id of pool %d of %d", pool, len(keys))
		}
		l.pools[i] = uint32(pool)
		if i > 0 && d.err == nil && (l.hashes[i] < l.hashes[i-1] || l.hashes[i] == l.hashes[i-1] && l.pools[i] <= l.pools[i-1]) {
			d.fail("reservation ids not sorted")
		}
	}
	return l
}

// Reset empties the models, as New returns them. Board subscribers are dropped.
func (m *Models) Reset() { m.restore(make(map[string]*row), loadedIDs{}, 0) }

// restore installs pools as the models' state at position and rebuilds
// every index from them; loaded is the reservation index that came with
// them.
func (m *Models) restore(pools map[string]*row, loaded loadedIDs, position uint64) {
	byStart := make([]*row, 0, len(pools))
	byID := newPoolsByID(0)
	byID.loaded = loaded
	for _, p := range loaded.pools {
		pools[loaded.keys[p]].indexedIDs++
	}
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
	for _, key := range loaded.keys { // as written: byStart comes sorted
		r := pools[key]
		r.pool.Region, r.pool.Kind = name(r.pool.Region), name(r.pool.Kind)
		if _, live := r.nextDeadline(); live {
			held[key] = r
		}
		if r.pool.Defined() {
			r.start = r.pool.StartsAt.UnixNano()
			byStart = append(byStart, r)
		}
		board.update(r.lastSeq, r) // no subscribers: nothing is published
	}
	byStartOrder := func(x, y *row) int {
		if c := compareInt(x.start, y.start); c != 0 {
			return c
		}
		return compareString(x.pool.ID, y.pool.ID)
	}
	if !slices.IsSortedFunc(byStart, byStartOrder) {
		slices.SortFunc(byStart, byStartOrder)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++ // a checkpoint being written is of the models replaced
	m.pools, m.held, m.names, m.position = pools, held, names, position
	m.broken.Store(nil)
	m.Availability.byStart = byStart
	m.Reservations.byID = byID
	m.Board.cells = board.cells
	for s := range m.Board.subs {
		delete(m.Board.subs, s)
		close(s.ch)
	}
}

// encoder writes the checkpoint format; the first error sticks.
// It appends to b, which flush writes to w and adds to the CRC: one write
// per 256 KiB, not one per field.
type encoder struct {
	w   io.Writer
	crc hash.Hash32
	b   []byte
	err error
}

// flush writes what is buffered once there is enough of it, or all of it
// if all.
func (e *encoder) flush(all bool) {
	if e.err != nil || len(e.b) < 256<<10 && !all {
		return
	}
	e.crc.Write(e.b)
	_, e.err = e.w.Write(e.b)
	e.b = e.b[:0]
}

func (e *encoder) raw(b []byte)     { e.b = append(e.b, b...) }
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }

func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// time writes t in its MarshalBinary form, which keeps its zone offset.
func (e *encoder) time(t time.Time) {
	n := len(e.b)
	e.b = append(e.b, 0) // the length, below: at most 16 bytes
	var err error
	if e.b, err = t.AppendBinary(e.b); err != nil && e.err == nil {
		e.err = err
	}
	e.b[n] = byte(len(e.b) - n - 1)
}

// holds writes the live holds of a pool and its body (nil once decoded),
// sorted by deadline.
func (e *encoder) holds(b *body, p *capacity.Pool) {
	var holds []liveHold
	if b != nil {
		holds = b.holds
	} else {
		p.LiveHolds(func(at int64, quantity int) { holds = append(holds, liveHold{at, quantity}) })
		slices.SortFunc(holds, func(x, y liveHold) int { return cmp.Compare(x.at, y.at) })
	}
	e.uvarint(uint64(len(holds)))
	for _, h := range holds {
		e.varint(h.at)
		e.varint(int64(h.quantity))
	}
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

// time reads what encoder.time wrote.
func (d *decoder) time() time.Time {
	b := d.bytes()
	var t time.Time
	if d.err == nil {
		if err := t.UnmarshalBinary(b); err != nil {
			d.fail("%v", err)
		}
	}
	return t
}
