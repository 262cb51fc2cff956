package loadgen

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunOpenSendsAtLeastOne: a rate too low for one request in the
// window (a maximum measured during a stall) still sends the request due at
// the start, so the open-loop row has a figure instead of none.
func TestRunOpenSendsAtLeastOne(t *testing.T) {
	var calls atomic.Int64
	res := RunOpen(context.Background(), OpenConfig{Name: "slow", Rate: 1, Workers: 4, Duration: 100 * time.Millisecond},
		func(context.Context, int) Outcome {
			calls.Add(1)
			return Outcome{Op: "hold", Status: 201}
		})
	if res.Sent != 1 || calls.Load() != 1 || res.OK != 1 {
		t.Fatalf("sent %d, called %d, ok %d: want one request at the start", res.Sent, calls.Load(), res.OK)
	}
}
