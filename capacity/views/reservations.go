package views

import (
	"slices"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// Reservations is the read model that finds reservations by id across
// pools. Reservation ids are unique within a pool, not globally, so a lookup
// returns every match. It is safe for one writer and many readers.
type Reservations struct {
	m    *Models
	byID poolsByID // reservation id -> pools holding it
}

// poolsByID maps a reservation id to the pools that have it. Nearly every
// id is in one pool (a booking's is in each of its pools), so that pool is
// the value of one map, and only an id in several pools has a list of the
// others, in a second: a map of slices would cost every reservation a slice
// header in the map and a one-string array besides. An entry never moves
// from one map to the other (only Refold removes any): a checkpoint reads
// the maps a part at a time, releasing the lock in between
// (checkpoint_write.go), and must meet every entry that was there when it
// began.
//
// The ids a checkpoint brought are not in the maps but in loaded, a sorted
// array of id hashes and their pools read as it is from the checkpoint: no
// id string and no map insert per reservation at a start. A hash may match
// another id (a 64-bit collision); Lookup asks the pool, which knows.
type poolsByID struct {
	one    map[string]string   // id -> the first pool recorded with it
	many   map[string][]string // id -> its other pools, sorted, when in several
	loaded loadedIDs
}

// loadedIDs is the reservation ids of a checkpoint: hashes[i] (idHash) is
// in pool keys[pools[i]]; sorted by hash then pool.
type loadedIDs struct {
	hashes []uint64
	pools  []uint32
	keys   []string
}

// find returns the range of entries with hash h.
func (l *loadedIDs) find(h uint64) (int, int) {
	i, _ := slices.BinarySearch(l.hashes, h)
	j := i
	for j < len(l.hashes) && l.hashes[j] == h {
		j++
	}
	return i, j
}

// has reports whether pool has an entry with hash h.
func (l *loadedIDs) has(h uint64, pool string) bool {
	i, j := l.find(h)
	for ; i < j; i++ {
		if l.keys[l.pools[i]] == pool {
			return true
		}
	}
	return false
}

// idHash is the key of a reservation id in loadedIDs and in a checkpoint:
// 64-bit FNV-1a, fixed across processes and builds.
func idHash(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

func newPoolsByID(n int) poolsByID {
	return poolsByID{one: make(map[string]string, n), many: make(map[string][]string)}
}

// add records that pool has id; false if it was recorded already.
func (x *poolsByID) add(id, pool string) bool {
	if len(x.loaded.hashes) > 0 && x.loaded.has(idHash(id), pool) {
		return false
	}
	first, ok := x.one[id]
	switch {
	case !ok:
		x.one[id] = pool
		return true
	case first == pool:
		return false
	}
	others := x.many[id]
	i, found := slices.BinarySearch(others, pool)
	if !found {
		x.many[id] = slices.Insert(others, i, pool)
	}
	return !found
}

// removePool forgets every id of pool (Models.Refold; a scan of the whole
// index, for a rare operation). The loaded arrays are copied, not
// compacted in place: a checkpoint being written may be reading them
// outside the lock (it is then abandoned, see Models.epoch).
func (x *poolsByID) removePool(pool string) {
	if l := &x.loaded; len(l.hashes) > 0 {
		hashes, pools := make([]uint64, 0, len(l.hashes)), make([]uint32, 0, len(l.pools))
		for i := range l.hashes {
			if l.keys[l.pools[i]] != pool {
				hashes, pools = append(hashes, l.hashes[i]), append(pools, l.pools[i])
			}
		}
		l.hashes, l.pools = hashes, pools
	}
	for id, others := range x.many {
		if i, found := slices.BinarySearch(others, pool); found {
			if others = slices.Delete(slices.Clone(others), i, i+1); len(others) == 0 {
				delete(x.many, id)
			} else {
				x.many[id] = others
			}
		}
	}
	for id, p := range x.one {
		if p != pool {
			continue
		}
		switch others := x.many[id]; len(others) {
		case 0:
			delete(x.one, id)
		case 1:
			x.one[id] = others[0]
			delete(x.many, id)
		default:
			x.one[id] = others[0]
			x.many[id] = others[1:]
		}
	}
}

// pools returns the pools that may have id, sorted: those recorded for
// it, and those of a checkpoint with its hash.
func (x *poolsByID) pools(id string) []string {
	var out []string
	if first, ok := x.one[id]; ok {
		others := x.many[id]
		out = make([]string, 0, 1+len(others))
		i, _ := slices.BinarySearch(others, first)
		out = append(append(append(out, others[:i]...), first), others[i:]...)
	}
	if l := &x.loaded; len(l.hashes) > 0 {
		if i, j := l.find(idHash(id)); i < j {
			for ; i < j; i++ {
				out = append(out, l.keys[l.pools[i]])
			}
			slices.Sort(out)
			out = slices.Compact(out)
		}
	}
	return out
}

// count returns how many (id, pool) pairs the index holds.
func (x *poolsByID) count() int {
	n := len(x.one) + len(x.loaded.hashes)
	for _, pools := range x.many {
		n += len(pools)
	}
	return n
}

// ReservationMatch is one reservation found by id, with its pool.
type ReservationMatch struct {
	Pool string `json:"pool"`
	capacity.Reservation
}

// NewReservations returns an empty reservations model over models of its
// own (see New for models that share their pools).
func NewReservations() *Reservations { return New().Reservations }

// Apply applies the events of one commit to the models (Models.Apply).
func (r *Reservations) Apply(pool string, seq uint64, events ...capacity.Event) {
	r.m.Apply(pool, seq, events...)
}

// index records that pool holds a reservation with the given id.
func (r *Reservations) index(pool, id string) {
	if r.byID.add(id, pool) {
		if row := r.m.pools[pool]; row != nil {
			row.indexedIDs++
		}
	}
}

// Advance records that seq was seen with nothing to apply (Models.Advance).
func (r *Reservations) Advance(seq uint64) { r.m.Advance(seq) }

// Position returns the highest stream sequence applied.
func (r *Reservations) Position() uint64 { return r.m.Position() }

// Lookup returns every reservation with the given id, sorted by pool, and
// the position they reflect. Each status is as seen at now: a hold past its
// deadline reads as expired before its Expired event (Reservation.StatusAt).
func (r *Reservations) Lookup(id string, now time.Time) ([]ReservationMatch, uint64) {
	r.m.mu.RLock()
	defer r.m.mu.RUnlock()
	ids := r.byID.pools(id)
	if len(ids) == 0 {
		return nil, r.m.position
	}
	matches := make([]ReservationMatch, 0, len(ids))
	for _, pool := range ids {
		row := r.m.pools[pool]
		if row == nil {
			continue
		}
		res := row.reservation(id) // retired ones too (capacity.RetainFinished); nil for a hash that matched another id
		if res == nil {
			continue
		}
		m := ReservationMatch{Pool: pool, Reservation: *res}
		m.Status = res.StatusAt(now)
		matches = append(matches, m)
	}
	return matches, r.m.position
}

// Count returns how many reservations the model holds, over all pools.
func (r *Reservations) Count() int {
	r.m.mu.RLock()
	defer r.m.mu.RUnlock()
	return r.byID.count()
}
