package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestRegionsWriteLeaseNoTwoWriters: with --write-lease, a region cut off
// from its peer stops acknowledging writes before the peer's takeover
// writes anything. Holds go to a without pause; the link between a and b
// is cut and b takes a's pools over at once, while a's lease still runs.
// Every hold a acknowledged must have been answered before b's promotion
// returned (b writes only after it); without the lease a would go on
// acknowledging holds until the link heals, and the test fails.
func TestRegionsWriteLeaseNoTwoWriters(t *testing.T) {
	const lease = 2 * time.Second
	var link *proxy
	a, b := startTwoRegionsLinked(t, "always", func(leaf string) string {
		link = startProxy(t, leaf)
		return link.Addr()
	}, "--write-lease", lease.String())
	ctx := context.Background()
	ca, cb := NewClient(a.HTTPURL, 5*time.Second), NewClient(b.HTTPURL, 5*time.Second)
	defer ca.Close()
	defer cb.Close()
	pools := []string{"wl-0", "wl-1", "wl-2", "wl-3"}
	// a writes once it has heard from b (the lease starts unheld).
	waitFor(t, 20*time.Second, func() error { return ca.DefinePool(ctx, pools[0], definition(100000)) })
	for _, p := range pools[1:] {
		if err := ca.DefinePool(ctx, p, definition(100000)); err != nil {
			t.Fatal(err)
		}
	}
	waitHome(t, cb, pools[len(pools)-1], "a")

	// Holds to a, one after another, until stop: when each answer came.
	type answer struct {
		id     string
		ok     bool
		status int
		at     time.Time
	}
	var (
		mu      sync.Mutex
		answers []answer
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("wl-%d", i)
			r := ca.Do(ctx, http.MethodPost, "/v1/pools/"+pools[i%len(pools)]+"/holds", map[string]any{"reservation_id": id, "quantity": 1, "ttl": "1h"}, nil)
			mu.Lock()
			answers = append(answers, answer{id: id, ok: r.Outcome == OK, status: r.Status, at: time.Now()})
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)

	link.Cut()
	cut := time.Now()
	takeOver(t, cb, "a", "takeover of a in b while a is cut off")
	promoted := time.Now()
	// b writes a's pools now.
	bFirst := cb.Do(ctx, http.MethodPost, "/v1/pools/"+pools[0]+"/holds", map[string]any{"reservation_id": "wl-b-first", "quantity": 1, "ttl": "1h"}, nil)
	want(t, "b's first hold on a's pool", bFirst, http.StatusCreated, "")
	time.Sleep(time.Second) // a keeps being asked meanwhile
	close(stop)
	wg.Wait()

	var okBefore, okAfterCut, refusedAfterCut int
	var lastOK, firstRefused time.Time
	for _, an := range answers {
		switch {
		case an.ok && an.at.Before(cut):
			okBefore++
		case an.ok:
			okAfterCut++
			lastOK = an.at
			if !an.at.Before(promoted) {
				t.Errorf("a acknowledged hold %s %v after b's takeover returned (b writes from then on): two writers", an.id, an.at.Sub(promoted))
			}
		case an.at.After(cut):
			refusedAfterCut++
			if firstRefused.IsZero() {
				firstRefused = an.at
			}
			if an.status != http.StatusServiceUnavailable {
				t.Errorf("hold %s refused with %d after the cut, want 503", an.id, an.status)
			}
		}
	}
	if okBefore == 0 || refusedAfterCut == 0 {
		t.Fatalf("%d holds acknowledged before the cut, %d refused after it: the traffic did not show the lease", okBefore, refusedAfterCut)
	}
	t.Logf("FIGURES TestRegionsWriteLeaseNoTwoWriters: --write-lease %v; a acknowledged %d holds before the cut and %d after it (the last %v after the cut, %v before b's takeover returned; these are the ones the takeover sets aside); a refused its first hold %v after the cut; the takeover took %v",
		lease, okBefore, okAfterCut, lastOK.Sub(cut).Round(time.Millisecond), promoted.Sub(lastOK).Round(time.Millisecond),
		firstRefused.Sub(cut).Round(time.Millisecond), promoted.Sub(cut).Round(time.Millisecond))
	if took := promoted.Sub(cut); took < lease {
		t.Errorf("the takeover returned %v after the cut, before a's lease (%v) could have lapsed", took, lease)
	}

	// The link heals: a sees the new epoch and forwards to b.
	link.Heal()
	waitFor(t, 30*time.Second, func() error {
		st, err := selfStatus(ctx, ca)
		if err != nil || st.Writer != "b" || st.Epoch != 1 {
			return fmt.Errorf("a after the heal: %+v, %v; want writer b at epoch 1", st, err)
		}
		return nil
	})
	waitFor(t, 30*time.Second, func() error {
		r := ca.Do(ctx, http.MethodPost, "/v1/pools/"+pools[1]+"/holds", map[string]any{"reservation_id": "wl-a-again", "quantity": 1, "ttl": "1h"}, nil)
		if r.Outcome != OK {
			return errNotOK("a hold sent to a after the heal (forwarded to b)", r)
		}
		return nil
	})
}
