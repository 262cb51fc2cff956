package capacity

import (
	"container/heap"
	"time"
)

// deadline is a hold's deadline, as pushed when the hold was evolved: at
// in unix nanoseconds, as snapshots keep times (24 bytes an entry against
// 40 with a time.Time; every live hold has one, in every copy of its pool).
type deadline struct {
	at int64
	id string
}

// deadlines is a min-heap of hold deadlines, so that a pool finds its lapsed
// holds and its next deadline by looking at the few holds near the top
// instead of scanning every reservation it has ever had (a hot pool holds
// hundreds of thousands). Entries are removed lazily: one whose reservation
// is no longer held is stale, and is popped once it reaches the top. The pool
// keeps the top live after every change.
type deadlines []deadline

func (h deadlines) Len() int { return len(h) }
func (h deadlines) Less(i, j int) bool {
	if h[i].at == h[j].at {
		return h[i].id < h[j].id
	}
	return h[i].at < h[j].at
}
func (h deadlines) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deadlines) Push(x any)   { *h = append(*h, x.(deadline)) }
func (h *deadlines) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}

// liveHold returns the reservation of entry d if d is still its live deadline.
func (p *Pool) liveHold(d deadline) *Reservation {
	r := p.Reservations[d.id]
	if r == nil || r.Status != StatusHeld || r.ExpiresAt.UnixNano() != d.at {
		return nil
	}
	return r
}

// trimDeadlines pops stale entries off the top of the heap.
func (p *Pool) trimDeadlines() {
	for len(p.deadlines) > 0 && p.liveHold(p.deadlines[0]) == nil {
		heap.Pop(&p.deadlines)
	}
}

// walkLapsed calls f for every live hold whose deadline is at or before now,
// and returns the earliest deadline after now among the entries it stopped
// at (a lower bound of the next live deadline; zero if none).
func (p *Pool) walkLapsed(now time.Time, f func(*Reservation)) (next time.Time) {
	h := p.deadlines
	nowNano := now.UnixNano()
	nextNano := int64(0) // none yet
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(h) {
			continue
		}
		if h[i].at > nowNano {
			if nextNano == 0 || h[i].at < nextNano {
				nextNano = h[i].at
			}
			continue // the heap property: nothing below lapsed either
		}
		if r := p.liveHold(h[i]); r != nil {
			f(r)
		}
		stack = append(stack, 2*i+1, 2*i+2)
	}
	if nextNano != 0 {
		next = time.Unix(0, nextNano).UTC()
	}
	return next
}

// rebuildDeadlines recomputes the heap from the reservations (after decoding
// a snapshot).
func (p *Pool) rebuildDeadlines() {
	p.deadlines = p.deadlines[:0]
	for id, r := range p.Reservations {
		if r.Status == StatusHeld {
			p.deadlines = append(p.deadlines, deadline{at: r.ExpiresAt.UnixNano(), id: id})
		}
	}
	heap.Init(&p.deadlines)
}

// LiveHolds calls f with the deadline (unix nanoseconds) and quantity of
// every live hold, as LapsedAt counts them, in no particular order: what a
// reader needs to answer LapsedAt without the pool (a read model that keeps
// a pool encoded until it is touched).
func (p *Pool) LiveHolds(f func(at int64, quantity int)) {
	for _, d := range p.deadlines {
		if r := p.liveHold(d); r != nil {
			f(d.at, r.Quantity)
		}
	}
}
