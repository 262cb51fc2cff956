package e2e

import (
	"fmt"
	"hash/fnv"
	"maps"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The model is the promise, per pool: a hold succeeds only if it fits
// (held + confirmed + quantity <= capacity) and is refused for capacity
// only if it does not; confirm turns a held reservation into a confirmed
// one; release gives a held or confirmed reservation back; a read returns
// the counters of every write linearized before it. A hold lapses at a
// lapse operation (added by the check for each hold the stream shows
// expired, see LapseOps): from then on its units are free, a confirm is
// refused with hold-expired and a release changes nothing. Capacity is
// not changed while traffic runs.

// resv is a reservation in the model.
type resv struct {
	qty    int
	status byte // 'h' held, 'c' confirmed, 'r' released, 'x' lapsed
}

// poolState is one pool's state. States are never mutated: Step returns a
// new one with a copied map when something changes.
type poolState struct {
	pool            string
	limit           int // -1 until the first operation names the pool
	held, confirmed int
	res             map[string]resv
	hash            uint64 // XOR of entryHash over res, kept up to date
}

func entryHash(id string, r resv) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte{0, r.status, byte(r.qty), byte(r.qty >> 8)})
	return h.Sum64()
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
			if x.limit != y.limit || x.held != y.held || x.confirmed != y.confirmed || x.hash != y.hash || len(x.res) != len(y.res) {
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
			return s.hash ^ uint64(s.held)<<32 ^ uint64(s.confirmed)
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
			return fmt.Sprintf("%s held=%d confirmed=%d capacity=%d live=[%s]", s.pool, s.held, s.confirmed, s.limit, strings.Join(live, " "))
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
		return fmt.Sprintf("lapse(%s)", op.ReservationID)
	case op.Outcome == OK && op.Kind == KindRead:
		return fmt.Sprintf("%s -> held=%d confirmed=%d", call, op.Held, op.Confirmed)
	case op.Outcome == OK:
		return call + " -> ok"
	case op.Outcome == Rejected:
		return call + " -> " + op.Problem
	}
	return call + " -> ?"
}

func step(s *poolState, in, out Op) (bool, any) {
	r, exists := s.res[in.ReservationID]
	fits := s.held+s.confirmed+in.Quantity <= s.limit
	switch in.Kind {
	case KindHold:
		switch {
		case out.Outcome == OK && exists:
			return r.qty == in.Quantity, s // an idempotent repeat
		case out.Outcome == OK:
			return fits, s.with(in.ReservationID, resv{qty: in.Quantity, status: 'h'})
		case out.Problem == "insufficient-capacity":
			return !exists && !fits, s
		case out.Problem == "conflict":
			return exists && r.qty != in.Quantity, s
		}
	case KindConfirm:
		switch {
		case out.Outcome == OK && exists && r.status == 'h':
			return true, s.with(in.ReservationID, resv{qty: r.qty, status: 'c'})
		case out.Outcome == OK:
			return exists && r.status == 'c', s
		case out.Problem == "not-found":
			return !exists, s
		case out.Problem == "conflict":
			return exists && r.status == 'r', s
		case out.Problem == "hold-expired":
			return exists && r.status == 'x', s
		}
	case KindLapse:
		if exists && r.status == 'h' {
			return true, s.with(in.ReservationID, resv{qty: r.qty, status: 'x'})
		}
		return false, s
	case KindRelease:
		switch {
		case out.Outcome == OK && exists && (r.status == 'h' || r.status == 'c'):
			return true, s.with(in.ReservationID, resv{qty: r.qty, status: 'r'})
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
