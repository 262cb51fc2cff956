package pools

import (
	"container/heap"
	"sync"
	"time"
)

// sweepTimers is the one timer behind every loaded entity's sweep: a
// min-heap of the instants at which entities want an Expire queued, and a
// time.Timer set for the earliest. A time.AfterFunc per entity would cost
// each loaded pool with a live hold about 250 bytes (the timer and its
// closure); an entry here costs the entity two words.
//
// Its mutex is the innermost lock: it is taken under the service's and an
// entity's, and fire is called with it released.
type sweepTimers struct {
	mu      sync.Mutex
	queue   sweepQueue
	timer   *time.Timer // set for the top of queue; nil until first needed
	fire    func(*entity)
	base    time.Time // sweepAt is monotonic nanoseconds since base
	stopped bool
}

func newSweepTimers(fire func(*entity)) *sweepTimers {
	return &sweepTimers{fire: fire, base: time.Now()}
}

// schedule makes e's sweep fire after wait, replacing any it had.
func (t *sweepTimers) schedule(e *entity, wait time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	e.sweepAt = int64(time.Since(t.base) + wait)
	if e.sweepIdx > 0 {
		heap.Fix(&t.queue, int(e.sweepIdx-1))
	} else {
		heap.Push(&t.queue, e)
	}
	if t.queue[0] == e {
		t.arm()
	}
}

// cancel removes e's sweep, if it has one.
func (t *sweepTimers) cancel(e *entity) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.sweepIdx > 0 {
		heap.Remove(&t.queue, int(e.sweepIdx-1))
	}
}

// arm sets the timer for the top of the queue; t.mu is held.
func (t *sweepTimers) arm() {
	if len(t.queue) == 0 {
		return // a timer that fires for nothing re-arms nothing
	}
	wait := time.Duration(t.queue[0].sweepAt) - time.Since(t.base)
	if t.timer == nil {
		t.timer = time.AfterFunc(wait, t.run)
		return
	}
	t.timer.Reset(wait)
}

// run fires every sweep that is due and re-arms the timer for the next.
func (t *sweepTimers) run() {
	t.mu.Lock()
	now := int64(time.Since(t.base))
	var due []*entity
	for len(t.queue) > 0 && t.queue[0].sweepAt <= now {
		due = append(due, heap.Pop(&t.queue).(*entity))
	}
	t.arm()
	t.mu.Unlock()
	for _, e := range due {
		t.fire(e)
	}
}

// stop stops the timer; sweeps scheduled after it never fire.
func (t *sweepTimers) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
	}
	for _, e := range t.queue {
		e.sweepIdx = 0
	}
	t.queue = nil
}

// sweepQueue is a min-heap of entities by sweepAt; each entity's sweepIdx is
// its index + 1 while it is in the heap, 0 otherwise.
type sweepQueue []*entity

func (q sweepQueue) Len() int           { return len(q) }
func (q sweepQueue) Less(i, j int) bool { return q[i].sweepAt < q[j].sweepAt }
func (q sweepQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].sweepIdx, q[j].sweepIdx = int32(i+1), int32(j+1)
}
func (q *sweepQueue) Push(x any) {
	e := x.(*entity)
	e.sweepIdx = int32(len(*q) + 1)
	*q = append(*q, e)
}
func (q *sweepQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	e.sweepIdx = 0
	return e
}
