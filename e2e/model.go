package e2e

import (
	"fmt"
	"hash/fnv"
	"maps"
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

// resv is a reservation in the model.
type resv struct {
	qty     int
	status  byte  // 'h' held, 'c' confirmed, 'r' released, 'x' lapsed
	expires int64 // deadline in the pool's time (unix ns); 0: unknown, never lapses
}

// poolState is one pool's state. States are never mutated: Step returns a
// new one with a copied map when something changes.
type poolState struct {
	pool            string
	limit           int // -1 until the first operation names the pool
	held, confirmed int
	now             int64 // the pool's recorded time as far as the model knows (unix ns)
	lapses          int   // lapse operations so far: the LapseSeq of the next
	res             map[string]resv
	hash            uint64 // XOR of entryHash over res, kept up to date
}

func entryHash(id string, r resv) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte{0, r.status, byte(r.qty), byte(r.qty >> 8)})
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
		x := resv{qty: r.qty, status: 'x', expires: r.expires}
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

// NewModel returns the per-pool model for pools of the given capacities.
// Operations are Op values (Input and Output are the same Op) whose
// outcome is OK or Rejected: unknowns must be resolved first.
func NewModel(capacities map[string]int) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byPool := make(map[string][]porcupine.Operation)
			var pools []string
			for _, op := range history {
				p := op.Input.(Op).Pool
				if _, ok := byPool[p]; !ok {
					pools = append(pools, p)
				}
				byPool[p] = append(byPool[p], op)
			}
			sort.Strings(pools)
			out := make([][]porcupine.Operation, 0, len(pools))
			for _, p := range pools {
				out = append(out, byPool[p])
			}
			return out
		},
		Init: func() any { return &poolState{limit: -1} },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(*poolState), input.(Op), output.(Op)
			if s.limit < 0 {
				limit, ok := capacities[in.Pool]
				if !ok {
					return false, s
				}
				s = &poolState{pool: in.Pool, limit: limit, res: map[string]resv{}}
			}
			return step(s, in, out)
		},
		Equal: func(a, b any) bool {
			x, y := a.(*poolState), b.(*poolState)
			if x.limit != y.limit || x.held != y.held || x.confirmed != y.confirmed || x.now != y.now || x.lapses != y.lapses || x.hash != y.hash || len(x.res) != len(y.res) {
				return false
			}
			for id, r := range x.res {
				if y.res[id] != r {
					return false
				}
			}
			return true
		},
		Hash: func(state any) uint64 {
			s := state.(*poolState)
			return s.hash ^ uint64(s.held)<<32 ^ uint64(s.confirmed) ^ uint64(s.now)*0xff51afd7ed558ccd ^ uint64(s.lapses)<<48
		},
		DescribeOperation: func(input, output any) string {
			return describeOp(output.(Op))
		},
		DescribeState: func(state any) string {
			s := state.(*poolState)
			if s.limit < 0 {
				return "(not yet seen)"
			}
			var live []string
			for id, r := range s.res {
				if r.status == 'h' || r.status == 'c' {
					live = append(live, fmt.Sprintf("%s:%c%d", id, r.status, r.qty))
				}
			}
			sort.Strings(live)
			return fmt.Sprintf("%s time=%s held=%d confirmed=%d capacity=%d live=[%s]", s.pool,
				time.Unix(0, s.now).UTC().Format("15:04:05.000000000"), s.held, s.confirmed, s.limit, strings.Join(live, " "))
		},
	}
}

func describeOp(op Op) string {
	var call string
	switch op.Kind {
	case KindHold:
		call = fmt.Sprintf("hold(%s, %d)", op.ReservationID, op.Quantity)
	case KindRead:
		call = "read()"
	default:
		call = fmt.Sprintf("%s(%s)", op.Kind, op.ReservationID)
	}
	switch {
	case op.Kind == KindLapse:
		return fmt.Sprintf("lapse(at %s: %s)", op.At.Format("15:04:05.000000000"), strings.Join(op.Lapses, " "))
	case op.Outcome == OK && op.Kind == KindRead:
		return fmt.Sprintf("%s -> held=%d confirmed=%d", call, op.Held, op.Confirmed)
	case op.Outcome == OK && op.Kind == KindHold && !op.At.IsZero():
		return fmt.Sprintf("%s -> ok at %s until %s", call, op.At.Format("15:04:05.000000000"), op.ExpiresAt.Format("15:04:05.000000000"))
	case op.Outcome == OK:
		return call + " -> ok"
	case op.Outcome == Rejected:
		return call + " -> " + op.Problem
	}
	return call + " -> ?"
}

func step(s *poolState, in, out Op) (bool, any) {
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
	if in.Kind == KindHold && out.Outcome == OK && !in.At.IsZero() {
		if _, exists := s.res[in.ReservationID]; !exists {
			// The hold that created the reservation was decided at in.At,
			// at or after the pool's time: what was due by then lapsed.
			t := in.At.UnixNano()
			if t < s.now {
				return false, s
			}
			s = s.at(t)
		}
	}
	r, exists := s.res[in.ReservationID]
	fits := s.held+s.confirmed+in.Quantity <= s.limit
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
			return fits, s.with(in.ReservationID, resv{qty: in.Quantity, status: 'h', expires: expires})
		case out.Problem == "insufficient-capacity":
			return !exists && !fits, s
		case out.Problem == "conflict":
			return exists && r.qty != in.Quantity, s
		}
	case KindConfirm:
		switch {
		case out.Outcome == OK && exists && r.status == 'h':
			return true, s.with(in.ReservationID, resv{qty: r.qty, status: 'c', expires: r.expires})
		case out.Outcome == OK:
			return exists && r.status == 'c', s
		case out.Problem == "not-found":
			return !exists, s
		case out.Problem == "conflict":
			return exists && r.status == 'r', s
		case out.Problem == "hold-expired":
			return exists && r.status == 'x', s
		}
	case KindRelease:
		switch {
		case out.Outcome == OK && exists && (r.status == 'h' || r.status == 'c'):
			return true, s.with(in.ReservationID, resv{qty: r.qty, status: 'r', expires: r.expires})
		case out.Outcome == OK:
			return exists, s
		case out.Problem == "not-found":
			return !exists, s
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
