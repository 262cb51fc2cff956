package views

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"
)

// Writing a checkpoint while events apply (a fuzzy checkpoint). A
// checkpoint of a million pools takes seconds to encode; under the read
// lock all along, Apply would wait that long and every read-your-write
// with it. So BeginCheckpoint notes the position P0 and the number of rows
// under the read lock, and starts a generation (Models.cpGen) that stamps
// every row made from then on; the write encodes one group of rows at a
// time under the read lock, releasing it after checkpointHold so that a
// waiting Apply goes first, and stamps each row it writes. It walks
// availability's index first (resuming after the last row it met), then
// the map of pools for the rows without the stamp: a range over a map
// meets once every entry that stays in it, even if the map changes between
// two steps (the language's rule; the steps are ordered by the lock).
// The result is not the models at one instant: a row encoded after later
// commits of its pool has them (its lastSeq says which), and a pool made
// after P0 is left out. Loaded, then fed the stream from P0+1, the models
// are those of a full replay, because
//   - a row's state is the fold of its pool's commits up to its lastSeq,
//     written under the lock that Apply takes for a whole commit, and Apply
//     ignores a commit at or below a pool's lastSeq: the replay applies to
//     each row exactly the commits it lacks;
//   - every pool that existed at P0 is written (a row is never removed but
//     by Refold or a restore, which abandon the checkpoint: Models.epoch),
//     and a pool made after P0 has no commit at or below P0, so the replay
//     makes it whole;
//   - the reservation index is read after every row is written, so it holds
//     every id of a row's commits up to its lastSeq; ids of commits after
//     it are re-added by the replay, which adds nothing twice
//     (poolsByID.add consults the loaded hashes); ids of pools left out are
//     dropped;
//   - everything else (start-time order, the held set, board cells, names)
//     is rebuilt from the rows on load, as before;
//   - a pool still encoded since a load is written as it is: an Apply that
//     decodes it replaces row.pool and row.body under the write lock, so a
//     group sees one or the other;
//   - models Broken at the start or the end are refused.
//
// Fenced sequences (Refold) are not stored, in a fuzzy checkpoint as
// before: those commits are deleted from the stream, which the replay
// reads.

// checkpointHold bounds how long a checkpoint's encoder holds the models'
// read lock at a time. Go's RWMutex makes a new reader wait behind a
// waiting writer, so a waiting Apply goes first at each release. A pool is
// encoded in one hold if it has fewer than cloneAbove reservations (about
// 1.2 us each), or if still encoded since a load, fewer than copyAbove
// bytes; a larger one is copied under the lock and encoded without it (a
// Clone of 70,000 reservations takes about a fifth of their encoding:
// capacity's BenchmarkCloneHotPool).
const (
	checkpointHold = 200 * time.Microsecond
	cloneAbove     = 1024
	copyAbove      = 64 << 10
)

// errAbandoned means the models' rows were replaced (Refold, a restore)
// while a checkpoint was written; a later one will be whole.
var errAbandoned = errors.New("views: checkpoint abandoned: the models were refolded or restored while it was written")

// WriteCheckpoint writes the models' folded state to w and returns the
// stream sequence it reflects: BeginCheckpoint, then the write it returns,
// on the caller's goroutine. Apply may be called meanwhile from another.
func (m *Models) WriteCheckpoint(w io.Writer) (uint64, error) {
	seq, write, err := m.BeginCheckpoint()
	if err != nil {
		return 0, err
	}
	return seq, write(w)
}

// BeginCheckpoint begins a checkpoint of the models at their position now,
// which it returns, and returns write, which encodes it into w. It holds the
// read lock only to note the position and the number of pools. write must
// be called once, from any goroutine, and may run while events are
// applied: it holds the read lock a group of rows at a time
// (checkpointHold), so queries go on and Apply waits at most that long
// (see above for why the result is still exact). One checkpoint at a time:
// BeginCheckpoint fails from the moment another begins until its write
// returns.
// Models that are Broken are refused, at the start and at the end. A pool
// still encoded since a load is copied as it is; w should be a file or a
// pipe rather than memory, as a checkpoint is hundreds of MB at a million
// pools.
func (m *Models) BeginCheckpoint() (uint64, func(w io.Writer) error, error) {
	c, err := m.beginCheckpoint(checkpointOptions{hold: checkpointHold, cloneAbove: cloneAbove, copyAbove: copyAbove})
	if err != nil {
		return 0, nil, err
	}
	return c.position, c.write, nil
}

// checkpointWriter is a checkpoint begun and not yet written.
type checkpointWriter struct {
	m        *Models
	position uint64 // P0
	gen      uint32 // Models.cpGen for this checkpoint: rows stamped so are written or new
	epoch    uint64 // Models.epoch at the start
	pools    int    // rows at the start: the rows to write
	checkpointOptions
}

// checkpointOptions are the encoder's bounds (checkpointHold, cloneAbove,
// copyAbove), which tests move, and a function to call each time it
// releases the lock (tests).
type checkpointOptions struct {
	hold                  time.Duration
	cloneAbove, copyAbove int
	pause                 func()
}

// beginCheckpoint is BeginCheckpoint with the encoder's options.
func (m *Models) beginCheckpoint(opts checkpointOptions) (*checkpointWriter, error) {
	if !m.checkpointing.CompareAndSwap(false, true) {
		return nil, errors.New("views: write checkpoint: another checkpoint is being written")
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.Broken(); err != nil {
		m.checkpointing.Store(false)
		return nil, fmt.Errorf("views: write checkpoint: the models must be rebuilt: %w", err)
	}
	// No Apply runs under the read lock: every row made from now on is
	// stamped with the new generation.
	gen := m.cpGen.Add(1)
	return &checkpointWriter{m: m, position: m.position, gen: gen, epoch: m.epoch, pools: len(m.pools),
		checkpointOptions: opts}, nil
}

// write encodes the checkpoint into w (see the format in checkpoint.go).
func (c *checkpointWriter) write(w io.Writer) error {
	m := c.m
	if m == nil {
		return errors.New("views: write checkpoint: written already")
	}
	c.m = nil
	defer m.checkpointing.Store(false)
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	e := encoder{w: w, crc: crc, b: make([]byte, 0, 512<<10)}
	e.raw([]byte(checkpointMagic))
	e.raw([]byte{checkpointVersion})
	e.uvarint(c.position)
	e.uvarint(uint64(c.pools))

	m.mu.RLock()
	locked, released, since := true, false, time.Now()
	defer func() {
		if locked {
			m.mu.RUnlock()
		}
	}()
	// unlock releases the lock and writes out what is encoded meanwhile;
	// lock takes it again and is false if the models' rows were replaced
	// in between.
	unlock := func() {
		m.mu.RUnlock()
		locked = false
		e.flush(false)
		if c.pause != nil {
			c.pause()
		}
	}
	lock := func() bool {
		m.mu.RLock()
		locked, released, since = true, true, time.Now()
		return m.epoch == c.epoch
	}
	// yield releases the lock for a moment once it has been held for
	// c.hold; false if the models' rows were replaced meanwhile.
	yield := func() bool {
		if time.Since(since) < c.hold {
			return true
		}
		unlock()
		return lock()
	}
	if m.epoch != c.epoch {
		return errAbandoned
	}
	ords := make(map[string]uint32) // the place of each pool with indexed ids
	place := 0
	var scratch []byte
	var err error
	// writeRow writes a row; false if the models' rows were replaced while
	// it had released the lock. A large pool is copied under the lock (a
	// Clone, which shares its reservations: Evolve never changes one in
	// place; a body is never changed) and encoded without it.
	writeRow := func(key string, r *row) bool {
		r.cp = c.gen
		if r.indexedIDs > 0 {
			ords[key] = uint32(place)
		}
		place++
		lastSeq, p, b := r.lastSeq, &r.pool, r.body
		detach := b != nil && len(b.raw) >= c.copyAbove || b == nil && len(p.Reservations) >= c.cloneAbove
		if detach {
			if b == nil {
				p = p.Clone()
			} else {
				head := *p // the head only (lazy.go)
				p = &head
			}
			unlock()
		}
		e.str(key)
		e.uvarint(lastSeq)
		switch {
		case !p.Defined():
			e.uvarint(0)
		case p.ID == key:
			e.uvarint(1)
		default: // a PoolDefined naming another pool than its subject's
			e.uvarint(2)
			e.str(p.ID)
		}
		e.str(p.Region)
		e.str(p.Kind)
		e.str(string(p.Status))
		e.time(p.StartsAt)
		e.time(p.EndsAt)
		e.varint(int64(p.Capacity))
		e.varint(int64(p.Overbook))
		e.uvarint(p.Version)
		held, confirmed := unitsOf(b, p)
		e.varint(int64(held))
		e.varint(int64(confirmed))
		e.holds(b, p)
		if scratch, err = snapshotOf(b, p, scratch[:0]); err != nil && e.err == nil {
			e.err = err
		}
		e.uvarint(uint64(len(scratch)))
		e.raw(scratch)
		return !detach || lock()
	}
	// In start-time order first, so that a load finds its index sorted,
	// then the rest: pools not defined, or defined under another id than
	// their key. The order is a convenience, the stamps are what counts:
	// after each release the walk of the index resumes after the last row
	// it met, and a row the walk misses (defined meanwhile with an earlier
	// start) is written by the pass over the map. A row filed under its id
	// has its id for key (a row has one key).
	byStart := &m.Availability.byStart
	var afterStart int64
	var afterID string
	for i := 0; ; i++ {
		if !yield() {
			return errAbandoned
		}
		if released {
			released = false
			j, found := m.Availability.findRow(afterStart, afterID)
			if i = j; found {
				i++
			}
		}
		if i >= len(*byStart) {
			break
		}
		r := (*byStart)[i]
		afterStart, afterID = r.start, r.pool.ID
		if r.cp != c.gen && r.pool.Defined() && m.pools[r.pool.ID] == r && !writeRow(r.pool.ID, r) {
			return errAbandoned
		}
	}
	// A map iterated across releases of the lock meets every entry that
	// stays in it once (the language's rule for a map changed during a
	// range); the pools made meanwhile are stamped c.gen and skipped.
	for key, r := range m.pools {
		if !yield() {
			return errAbandoned
		}
		if r.cp != c.gen && !writeRow(key, r) {
			return errAbandoned
		}
	}
	if place != c.pools && e.err == nil {
		e.err = fmt.Errorf("%d pools written of %d", place, c.pools)
	}
	ids, err := c.ids(m, ords, yield)
	if err != nil {
		return err
	}
	end := m.position // every row is at or below it
	if err := m.Broken(); err != nil {
		return fmt.Errorf("views: write checkpoint: the models must be rebuilt: %w", err)
	}
	m.mu.RUnlock()
	locked = false
	e.uvarint(end)
	ids.write(&e, ords)
	e.flush(true)
	if e.err != nil {
		return fmt.Errorf("views: write checkpoint: %w", e.err)
	}
	if _, err := w.Write(crc.Sum(nil)); err != nil { // big endian
		return fmt.Errorf("views: write checkpoint: %w", err)
	}
	return nil
}

// idEntry is one entry of a checkpoint's reservation index: an id's hash
// and its pool's place.
type idEntry struct {
	hash uint64
	pool uint32
}

func compareIDEntry(a, b idEntry) int {
	if a.hash != b.hash {
		return cmp.Compare(a.hash, b.hash)
	}
	return cmp.Compare(a.pool, b.pool)
}

// checkpointIDs is the reservation index as a checkpoint writes it: the
// loaded entries (never changed in place) and the entries of the maps,
// hashed, in chunks of idChunk (no slice grows by copying under the lock).
type checkpointIDs struct {
	loaded loadedIDs
	added  [][]idEntry
}

const idChunk = 1 << 16

// add adds an entry.
func (x *checkpointIDs) add(en idEntry) {
	if n := len(x.added); n == 0 || len(x.added[n-1]) == idChunk {
		x.added = append(x.added, make([]idEntry, 0, idChunk))
	}
	last := &x.added[len(x.added)-1]
	*last = append(*last, en)
}

// ids reads the reservation index under the lock, releasing it with yield
// every few entries, and keeps the entries of the pools written (ords).
// An id of a pool left out (made after P0, or that had no id when its row
// was written) is of a commit after the row's, which the replay applies.
func (c *checkpointWriter) ids(m *Models, ords map[string]uint32, yield func() bool) (checkpointIDs, error) {
	x := &m.Reservations.byID
	out := checkpointIDs{loaded: x.loaded}
	n := 0
	for id, pool := range x.one {
		if n++; n%64 == 0 && !yield() {
			return out, errAbandoned
		}
		if o, ok := ords[pool]; ok {
			out.add(idEntry{idHash(id), o})
		}
	}
	for id, others := range x.many {
		if n++; n%64 == 0 && !yield() {
			return out, errAbandoned
		}
		h := idHash(id)
		for _, pool := range others {
			if o, ok := ords[pool]; ok {
				out.add(idEntry{h, o})
			}
		}
	}
	return out, nil
}

// write writes the index's entries, sorted by hash then pool: those loaded
// (their pools renumbered) merged with those of the maps. ords is the place
// of every pool with indexed ids among the pools written. Two ids of one
// pool with one hash are one entry, as a lookup finds them.
func (x checkpointIDs) write(e *encoder, ords map[string]uint32) {
	added := slices.Concat(x.added...)
	slices.SortFunc(added, compareIDEntry)
	added = slices.Compact(added)
	l := &x.loaded
	renumber := make([]uint32, len(l.keys))
	for i, key := range l.keys {
		renumber[i] = ords[key] // every loaded pool with an entry counts it (restore)
	}
	e.uvarint(uint64(len(l.hashes) + len(added)))
	var run []idEntry // the entries of one hash, from both sides
	i, j := 0, 0
	for i < len(l.hashes) || j < len(added) {
		h := uint64(0)
		switch {
		case j == len(added) || i < len(l.hashes) && l.hashes[i] <= added[j].hash:
			h = l.hashes[i]
		default:
			h = added[j].hash
		}
		run = run[:0]
		for ; i < len(l.hashes) && l.hashes[i] == h; i++ {
			run = append(run, idEntry{h, renumber[l.pools[i]]})
		}
		for ; j < len(added) && added[j].hash == h; j++ {
			run = append(run, added[j])
		}
		if len(run) > 1 {
			slices.SortFunc(run, compareIDEntry)
		}
		for _, en := range run {
			e.b = binary.BigEndian.AppendUint64(e.b, en.hash)
			e.uvarint(uint64(en.pool))
			e.flush(false)
		}
	}
}
