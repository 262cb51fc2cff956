package e2e

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The model is the promise, per pool: a hold succeeds only if it fits
// (held + confirmed + quantity <= capacity) and is refused for capacity
// only if it does not; confirm turns a held reservation into a confirmed
// one; release gives a held or confirmed reservation back; a read returns
// the counters of every write linearized before it. Capacity is not
// changed while traffic runs.
//
// Holds lapse, and lapses are where clocks come in. Writers' clocks
// disagree (by minutes in TestFaultClockSkew), so "the hold's deadline has
// passed" is true or false only relative to some clock. The one the
// service promises to keep is the pool's recorded time: every decision is
// taken at the later of its writer's clock and the latest time the pool's
// events carry, so that time never goes back, and a hold lapses at the
// moment it reaches the hold's deadline, for every writer after, whatever
// its clock says. So the model keeps the pool's time (now):
//
//   - A lapse operation (added by the check, see LapseOps) is the pool's
//     time reaching a deadline: every hold due by then lapses at once, and
//     the holds the stream shows lapsing there must still be held. Its
//     units are free from then on, a confirm is refused with hold-expired,
//     a release changes nothing. Lapses happen one after the other in the
//     order of their deadlines (each carries its place, LapseSeq): one for
//     an earlier deadline after one for a later one would be time going
//     back. Saying so in the state, rather than only refusing to go back,
//     matters for the search: a lapse that skipped ahead would leave the
//     skipped ones impossible, and porcupine would learn that only after
//     trying every subset of them.
//   - A hold carries the time it was decided at and its deadline (from its
//     Held event): it is decided at or after the pool's time (moving it on,
//     lapsing what is due by then) and is not lapsed when granted.
//
// What the model does not assert: when, in real time, a deadline is
// passed. That depends on clocks no client sees; the check bounds each
// lapse's window from the stream (the writes the pool decided before and
// after the deadline) and from the clock schedule of the test, and the
// model only requires that some point in that window explains every answer.
// It is not weaker than the independent lapse per hold it replaces: the
// order of lapses is an added constraint (a read that shows a later hold
// lapsed and an earlier one held is rejected), and grouping the holds of
// one deadline keeps the search from trying every subset of them.
//
// Extensions and partial confirms: an extension is ok only for a live
// hold, whose deadline becomes the one its Extended event carries (decided
// at that event's time, like a hold); a confirm of N units keeps N and
// gives the rest back at once; again with N (or none) it is a repeat, with
// other units a conflict.
//
// Bookings: a booking is one operation over every pool it names, applied
// at one point to all of them or to none. Booked, it holds each item
// (each decided at its own pool's time, from its Held event, all with the
// one deadline); it is ok only if every item fits there, and refused for
// capacity only if some item does not (the pool the refusal names does
// not: see stepBooking for why not "the first that does not"). Confirm,
// extend and release of a booking move every part together; a confirm is
// refused as expired only if some part has lapsed. Each part lapses when
// its own pool's time reaches the shared deadline (lapses stay per pool).
// A single-pool confirm, release or extend of a booking's reservation is a
// conflict. So the model is not partitioned by pool but by the connected
// groups of pools that bookings link (Partition): its state is the states
// of a group's pools.

// resv is a reservation in the model.
type resv struct {
	qty     int
	status  byte  // 'h' held, 'c' confirmed, 'r' released, 'x' lapsed
	booking bool  // a booking's part: moves only with its booking
	expires int64 // deadline in the pool's time (unix ns); 0: unknown, never lapses
}

// poolState is one pool's state. States are never mutated: Step returns a
// new one with a copied map when something changes.
type poolState struct {
	pool            string
	limit           int
	held, confirmed int
	now             int64 // the pool's recorded time as far as the model knows (unix ns)
	lapses          int   // lapse operations so far: the LapseSeq of the next
	res             map[string]resv
	hash            uint64 // XOR of entryHash over res, kept up to date
}

func entryHash(id string, r resv) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	b := byte(0)
	if r.booking {
		b = 1
	}
	h.Write([]byte{0, r.status, byte(r.qty), byte(r.qty >> 8), b})
	return h.Sum64() ^ uint64(r.expires)*0x9e3779b97f4a7c15
}

// at returns s with the pool's time moved on to t: every hold due by then
// has lapsed. A t not after s.now changes nothing.
func (s *poolState) at(t int64) *poolState {
	if t <= s.now {
		return s
	}
	n := *s
	n.now = t
	cloned := false
	for id, r := range s.res {
		if r.status != 'h' || r.expires == 0 || r.expires > t {
			continue
		}
		if !cloned {
			n.res, cloned = maps.Clone(s.res), true
		}
		x := r
		x.status = 'x'
		n.hash ^= entryHash(id, r) ^ entryHash(id, x)
		n.adjust(r, -1)
		n.res[id] = x
	}
	return &n
}

// with returns a copy of s with reservation id set to r.
func (s *poolState) with(id string, r resv) *poolState {
	n := *s
	n.res = maps.Clone(s.res)
	if old, ok := s.res[id]; ok {
		n.hash ^= entryHash(id, old)
		n.adjust(old, -1)
	}
	n.res[id] = r
	n.hash ^= entryHash(id, r)
	n.adjust(r, +1)
	return &n
}

func (s *poolState) adjust(r resv, sign int) {
	switch r.status {
	case 'h':
		s.held += sign * r.qty
	case 'c':
		s.confirmed += sign * r.qty
	}
}

func (s *poolState) fits(quantity int) bool { return s.held+s.confirmed+quantity <= s.limit }

// fresh reports whether nothing has happened to the pool yet.
func (s *poolState) fresh() bool {
	return s.held == 0 && s.confirmed == 0 && s.now == 0 && s.lapses == 0 && len(s.res) == 0
}

func (s *poolState) equal(o *poolState) bool {
	if s.limit != o.limit || s.held != o.held || s.confirmed != o.confirmed || s.now != o.now || s.lapses != o.lapses || s.hash != o.hash || len(s.res) != len(o.res) {
		return false
	}
	for id, r := range s.res {
		if o.res[id] != r {
			return false
		}
	}
	return true
}

func (s *poolState) hash64() uint64 {
	if s.fresh() {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(s.pool))
	return (s.hash ^ uint64(s.held)<<32 ^ uint64(s.confirmed) ^ uint64(s.now)*0xff51afd7ed558ccd ^ uint64(s.lapses)<<48) * (h.Sum64() | 1)
}

func (s *poolState) describe() string {
	var live []string
	for id, r := range s.res {
		if r.status == 'h' || r.status == 'c' {
			live = append(live, fmt.Sprintf("%s:%c%d", id, r.status, r.qty))
		}
	}
	sort.Strings(live)
	return fmt.Sprintf("%s time=%s held=%d confirmed=%d capacity=%d live=[%s]", s.pool,
		time.Unix(0, s.now).UTC().Format("15:04:05.000000000"), s.held, s.confirmed, s.limit, strings.Join(live, " "))
}

// groupState is the state of one partition: the states of the pools its
// operations have named so far, by pool id. A pool not in it is as it was
// at the start (fresh). Never mutated, like poolState.
type groupState struct {
	pools map[string]*poolState
}

// pool returns the state of pool id, fresh if the group has not seen it;
// false for a pool the test did not define.
func (g *groupState) pool(capacities map[string]int, id string) (*poolState, bool) {
	if s, ok := g.pools[id]; ok {
		return s, true
	}
	limit, ok := capacities[id]
	if !ok {
		return nil, false
	}
	return &poolState{pool: id, limit: limit, res: map[string]resv{}}, true
}

// with returns a copy of g with the given pools' states replaced.
func (g *groupState) with(states ...*poolState) *groupState {
	n := &groupState{pools: maps.Clone(g.pools)}
	if n.pools == nil {
		n.pools = make(map[string]*poolState, len(states))
	}
	for _, s := range states {
		n.pools[s.pool] = s
	}
	return n
}

// NewModel returns the model for pools of the given capacities, partitioned
// by the groups of pools that bookings link. Operations are Op values
// (Input and Output are the same Op) whose outcome is OK or Rejected:
// unknowns must be resolved first.
func NewModel(capacities map[string]int) porcupine.Model {
	return porcupine.Model{
		Partition: partitionByGroup,
		Init:      func() any { return &groupState{} },
		Step: func(state, input, output any) (bool, any) {
			g, in, out := state.(*groupState), input.(Op), output.(Op)
			pools := in.Pools()
			states := make([]*poolState, len(pools))
			for i, p := range pools {
				s, ok := g.pool(capacities, p)
				if !ok {
					return false, g
				}
				states[i] = s
			}
			if in.IsBooking() {
				ok, next := stepBooking(states, in, out)
				if !ok || next == nil {
					return ok, g
				}
				return true, g.with(next...)
			}
			ok, next := step(states[0], in, out)
			if !ok || next == states[0] {
				return ok, g
			}
			return true, g.with(next)
		},
		Equal: func(a, b any) bool {
			x, y := a.(*groupState), b.(*groupState)
			for id, s := range x.pools {
				if o, ok := y.pools[id]; ok {
					if !s.equal(o) {
						return false
					}
				} else if !s.fresh() {
					return false
				}
			}
			for id, o := range y.pools {
				if _, ok := x.pools[id]; !ok && !o.fresh() {
					return false
				}
			}
			return true
		},
		Hash: func(state any) uint64 {
			var h uint64
			for _, s := range state.(*groupState).pools {
				h ^= s.hash64()
			}
			return h
		},
		DescribeOperation: func(input, output any) string {
			return describeOp(output.(Op))
		},
		DescribeState: func(state any) string {
			g := state.(*groupState)
			ids := slices.Sorted(maps.Keys(g.pools))
			if len(ids) == 0 {
				return "(no pool seen yet)"
			}
			out := make([]string, len(ids))
			for i, id := range ids {
				out[i] = g.pools[id].describe()
			}
			return strings.Join(out, " | ")
		},
	}
}

// partitionByGroup splits a history into the connected groups of pools
// that its operations link (union-find over each booking's pools): every
// operation of a group lands in one partition, ordered by group's first
// pool. Without bookings it is the partition by pool.
func partitionByGroup(history []porcupine.Operation) [][]porcupine.Operation {
	parent := map[string]string{}
	var find func(p string) string
	find = func(p string) string {
		q, ok := parent[p]
		if !ok {
			parent[p] = p
			return p
		}
		if q == p {
			return p
		}
		r := find(q)
		parent[p] = r
		return r
	}
	for _, op := range history {
		pools := op.Input.(Op).Pools()
		root := find(pools[0])
		for _, p := range pools[1:] {
			if r := find(p); r != root {
				// The smaller id is the root: the group's name.
				if r < root {
					root, r = r, root
				}
				parent[r] = root
			}
		}
	}
	byGroup := make(map[string][]porcupine.Operation)
	for _, op := range history {
		g := find(op.Input.(Op).Pools()[0])
		byGroup[g] = append(byGroup[g], op)
	}
	groups := slices.Sorted(maps.Keys(byGroup))
	out := make([][]porcupine.Operation, 0, len(groups))
	for _, g := range groups {
		out = append(out, byGroup[g])
	}
	return out
}

func describeOp(op Op) string {
	var call string
	switch op.Kind {
	case KindHold:
		call = fmt.Sprintf("hold(%s, %d)", op.ReservationID, op.Quantity)
	case KindRead:
		call = fmt.Sprintf("read(%s)", op.Pool)
	case KindConfirm:
		if op.Quantity > 0 {
			call = fmt.Sprintf("confirm(%s, %d)", op.ReservationID, op.Quantity)
		} else {
			call = fmt.Sprintf("confirm(%s)", op.ReservationID)
		}
	case KindExtend, KindBookExtend:
		call = fmt.Sprintf("%s(%s, %s)", op.Kind, op.ReservationID, op.TTL)
	case KindBook:
		items := make([]string, len(op.Items))
		for i, it := range op.Items {
			items[i] = fmt.Sprintf("%s:%d", it.Pool, it.Quantity)
		}
		call = fmt.Sprintf("book(%s, %s)", op.ReservationID, strings.Join(items, " "))
	default:
		call = fmt.Sprintf("%s(%s)", op.Kind, op.ReservationID)
	}
	switch {
	case op.Kind == KindLapse:
		return fmt.Sprintf("lapse(%s at %s: %s)", op.Pool, op.At.Format("15:04:05.000000000"), strings.Join(op.Lapses, " "))
	case op.Outcome == OK && op.Kind == KindRead:
		return fmt.Sprintf("%s -> held=%d confirmed=%d", call, op.Held, op.Confirmed)
	case op.Outcome == OK && (op.Kind == KindHold || op.Kind == KindExtend) && !op.At.IsZero():
		return fmt.Sprintf("%s -> ok at %s until %s", call, op.At.Format("15:04:05.000000000"), op.ExpiresAt.Format("15:04:05.000000000"))
	case op.Outcome == OK && (op.Kind == KindBook || op.Kind == KindBookExtend) && !op.ExpiresAt.IsZero():
		return fmt.Sprintf("%s -> ok until %s", call, op.ExpiresAt.Format("15:04:05.000000000"))
	case op.Outcome == OK:
		return call + " -> ok"
	case op.Outcome == Rejected && op.ProblemPool != "":
		return call + " -> " + op.Problem + " (" + op.ProblemPool + ")"
	case op.Outcome == Rejected:
		return call + " -> " + op.Problem
	}
	return call + " -> ?"
}

// decidedAt moves s to the pool's time t at which a write was decided (its
// event's time): false if that is before the pool's time. A zero t (not
// known) changes nothing.
func decidedAt(s *poolState, t time.Time) (*poolState, bool) {
	if t.IsZero() {
		return s, true
	}
	n := t.UnixNano()
	if n < s.now {
		return s, false
	}
	return s.at(n), true
}

func step(s *poolState, in, out Op) (bool, *poolState) {
	if in.Kind == KindLapse {
		// The pool's time reaches in.At; it never goes back, and the holds
		// the stream shows lapsing here are held until then.
		t := in.At.UnixNano()
		if in.LapseSeq != s.lapses || t < s.now {
			return false, s
		}
		for _, id := range in.Lapses {
			if r, ok := s.res[id]; !ok || r.status != 'h' {
				return false, s
			}
		}
		n := *s.at(t)
		n.lapses++
		return true, &n
	}
	if (in.Kind == KindHold || in.Kind == KindExtend) && out.Outcome == OK {
		if _, exists := s.res[in.ReservationID]; !exists || in.Kind == KindExtend {
			// The hold that created the reservation (the extension) was
			// decided at in.At, at or after the pool's time: what was due
			// by then lapsed.
			var ok bool
			if s, ok = decidedAt(s, in.At); !ok {
				return false, s
			}
		}
	}
	r, exists := s.res[in.ReservationID]
	if exists && r.booking && in.Kind != KindRead {
		// A booking's part moves only with its booking.
		return out.Outcome == Rejected && out.Problem == "conflict", s
	}
	switch in.Kind {
	case KindHold:
		switch {
		case out.Outcome == OK && exists:
			return r.qty == in.Quantity, s // an idempotent repeat
		case out.Outcome == OK:
			var expires int64
			if !in.ExpiresAt.IsZero() {
				expires = in.ExpiresAt.UnixNano()
			}
			return s.fits(in.Quantity), s.with(in.ReservationID, resv{qty: in.Quantity, status: 'h', expires: expires})
		case out.Problem == "insufficient-capacity":
			return !exists && !s.fits(in.Quantity), s
		case out.Problem == "conflict":
			return exists && r.qty != in.Quantity, s
		}
	case KindConfirm:
		// in.Quantity units (0: all of them); the rest is given back.
		repeat := r.status == 'c' && (in.Quantity == 0 || in.Quantity == r.qty)
		switch {
		case out.Outcome == OK && exists && r.status == 'h' && in.Quantity <= r.qty:
			c := r
			c.status = 'c'
			if in.Quantity > 0 {
				c.qty = in.Quantity
			}
			return true, s.with(in.ReservationID, c)
		case out.Outcome == OK:
			return exists && repeat, s
		case out.Problem == "not-found":
			return !exists, s
		case out.Problem == "conflict":
			return exists && (r.status == 'r' || r.status == 'c' && !repeat), s
		case out.Problem == "hold-expired":
			return exists && r.status == 'x', s
		case out.Problem == "invalid-request":
			return exists && r.status == 'h' && in.Quantity > r.qty, s
		}
	case KindRelease:
		switch {
		case out.Outcome == OK && exists && (r.status == 'h' || r.status == 'c'):
			x := r
			x.status = 'r'
			return true, s.with(in.ReservationID, x)
		case out.Outcome == OK:
			return exists, s
		case out.Problem == "not-found":
			return !exists, s
		}
	case KindExtend:
		switch {
		case out.Outcome == OK && exists && r.status == 'h':
			if in.ExpiresAt.IsZero() {
				return true, s // nothing written: the hold already lived that long
			}
			x := r
			x.expires = in.ExpiresAt.UnixNano()
			return true, s.with(in.ReservationID, x)
		case out.Outcome == OK:
			return false, s // only a live hold is extended
		case out.Problem == "not-found":
			return !exists, s
		case out.Problem == "conflict":
			return exists && (r.status == 'c' || r.status == 'r'), s
		case out.Problem == "hold-expired":
			return exists && r.status == 'x', s
		}
	case KindRead:
		if out.Outcome == OK {
			return out.Held == s.held && out.Confirmed == s.confirmed && out.Capacity == s.limit, s
		}
	}
	// Any other answer (pool-closed, an unresolved unknown) is not
	// something this pool may do.
	return false, s
}

// stepBooking applies a booking operation to the states of its pools (in
// the booking's item order) at one point: all parts or none. next is nil
// when nothing changes.
func stepBooking(states []*poolState, in, out Op) (ok bool, next []*poolState) {
	id := in.ReservationID
	parts := make([]resv, len(states))
	found := 0
	has := func(status byte) bool {
		for _, r := range parts {
			if r.status == status {
				return true
			}
		}
		return false
	}
	for i, s := range states {
		if r, ok := s.res[id]; ok {
			if !r.booking {
				// The id is a plain reservation in this pool.
				return out.Outcome == Rejected && out.Problem == "conflict", nil
			}
			parts[i] = r
			found++
		}
	}
	if found != 0 && found != len(states) {
		return false, nil // never seen partly booked
	}
	exists := found > 0
	// each returns the states with every part changed by f (which may
	// first move a pool to the part's decision time).
	each := func(f func(i int, s *poolState, r resv) (*poolState, bool)) (bool, []*poolState) {
		next := make([]*poolState, len(states))
		for i, s := range states {
			n, ok := f(i, s, parts[i])
			if !ok {
				return false, nil
			}
			next[i] = n
		}
		return true, next
	}
	switch in.Kind {
	case KindBook:
		switch {
		case out.Outcome == OK && exists:
			// An idempotent repeat: the same units in every pool.
			for i, it := range in.Items {
				if parts[i].qty != it.Quantity {
					return false, nil
				}
			}
			return true, nil
		case out.Outcome == OK:
			var expires int64
			if !in.ExpiresAt.IsZero() {
				expires = in.ExpiresAt.UnixNano()
			}
			return each(func(i int, s *poolState, _ resv) (*poolState, bool) {
				s, ok := decidedAt(s, in.Items[i].At)
				if !ok || !s.fits(in.Items[i].Quantity) {
					return nil, false
				}
				return s.with(id, resv{qty: in.Items[i].Quantity, status: 'h', booking: true, expires: expires}), true
			})
		case out.Problem == "insufficient-capacity":
			if exists {
				return false, nil
			}
			if out.ProblemPool == "" {
				for i, it := range in.Items {
					if !states[i].fits(it.Quantity) {
						return true, nil
					}
				}
				return false, nil
			}
			// The pool named is short. Not necessarily the first short in
			// the booking's order at that point: a refused part does not
			// hold its pool while the others are decided, so an item
			// before it may have been short when the named one was and
			// fit only later (TestFaultKill9 found such a refusal).
			for i, it := range in.Items {
				if it.Pool == out.ProblemPool {
					return !states[i].fits(it.Quantity), nil
				}
			}
			return false, nil
		case out.Problem == "conflict":
			if !exists {
				return false, nil
			}
			for i, it := range in.Items {
				if parts[i].qty != it.Quantity {
					return true, nil
				}
			}
			return false, nil
		}
	case KindBookConfirm:
		switch {
		case out.Outcome == OK && exists && !has('c') && !has('r') && !has('x'):
			return each(func(_ int, s *poolState, r resv) (*poolState, bool) {
				r.status = 'c'
				return s.with(id, r), true
			})
		case out.Outcome == OK:
			return exists && !has('h') && !has('r') && !has('x'), nil // a repeat
		case out.Problem == "not-found":
			return !exists, nil
		case out.Problem == "hold-expired":
			return exists && has('x') && !has('c'), nil
		case out.Problem == "conflict":
			return exists && has('r'), nil
		}
	case KindBookRelease:
		switch {
		case out.Outcome == OK && exists:
			return each(func(_ int, s *poolState, r resv) (*poolState, bool) {
				if r.status != 'h' && r.status != 'c' {
					return s, true
				}
				r.status = 'r'
				return s.with(id, r), true
			})
		case out.Problem == "not-found":
			return !exists, nil
		}
	case KindBookExtend:
		switch {
		case out.Outcome == OK && exists:
			return each(func(i int, s *poolState, _ resv) (*poolState, bool) {
				s, ok := decidedAt(s, in.Items[i].At)
				r := s.res[id]
				if !ok || r.status != 'h' {
					return nil, false // only live holds are extended
				}
				if in.ExpiresAt.IsZero() {
					return s, true
				}
				r.expires = in.ExpiresAt.UnixNano()
				return s.with(id, r), true
			})
		case out.Problem == "not-found":
			return !exists, nil
		case out.Problem == "hold-expired":
			return exists && has('x'), nil
		case out.Problem == "conflict":
			return exists && (has('c') || has('r')), nil
		}
	}
	return false, nil
}
