package pools

import (
	"context"
	"sync"
	"time"
)

// drainerLinger is how long a goroutine that drained an entity's queue
// waits for another queue to drain before it exits.
const drainerLinger = 2 * time.Second

// drainers runs entities' drains on goroutines that outlive one drain.
//
// A goroutine started for each drain begins with a small stack and grows
// it, by copying, every time: the write path (decide, the trace span, the
// append waiting on its ack) is deep enough that the copies cost about
// 2.5% of a hold's CPU when a thousand pools each append one command at a
// time (`capacityd bench --scenario many-pools` with --cpuprofile:
// runtime.copystack under the append's span). A goroutine that has just
// drained one queue already has the stack the next drain needs, so it
// lingers a little for the next entity instead of exiting. There is no
// fixed pool of them: a drain may wait on its append for as long as a disk
// sync takes, and a thousand pools may be waiting at once.
type drainers struct {
	ctx  context.Context
	wg   *sync.WaitGroup // the service's: Close waits for every drainer
	idle chan *entity    // unbuffered: a send succeeds only into a waiting drainer
}

// start drains e on a lingering goroutine if one is waiting, else on a new
// one. The caller holds the service's mu (so wg.Add never races Close's
// Wait).
func (d *drainers) start(e *entity) {
	select {
	case d.idle <- e:
	default:
		d.wg.Add(1)
		go d.run(e)
	}
}

// run drains e, then every entity handed to it while it lingers; it exits
// once no entity came for drainerLinger or the service stops. An entity handed
// over is never dropped: the unbuffered send completes only when this
// select takes it.
func (d *drainers) run(e *entity) {
	defer d.wg.Done()
	timer := time.NewTimer(drainerLinger)
	defer timer.Stop()
	for {
		e.drain()
		timer.Reset(drainerLinger)
		select {
		case e = <-d.idle:
		case <-timer.C:
			return
		case <-d.ctx.Done():
			return
		}
	}
}
