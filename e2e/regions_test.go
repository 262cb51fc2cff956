package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// startTwoRegions runs capacityd region a (embedded NATS, leaf-node
// listener) and region b (embedded NATS, leaf remote to a), each mirroring
// the other, and waits until b sees a reachable.
func startTwoRegions(t *testing.T, sync string) (a, b *capacityd) {
	t.Helper()
	return startTwoRegionsLinked(t, sync, func(leaf string) string { return leaf })
}

// startTwoRegionsLinked is startTwoRegions with b's leaf remote dialling
// link(a's leaf-node listen address) instead: a proxy, say.
func startTwoRegionsLinked(t *testing.T, sync string, link func(leaf string) string, extra ...string) (a, b *capacityd) {
	t.Helper()
	leaf := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a = startCapacityd(t, capacitydOpts{Name: "a", Region: "a", Sync: sync,
		Extra: append([]string{"--peer-regions", "b", "--leafnode-listen", leaf}, extra...)})
	b = startCapacityd(t, capacitydOpts{Name: "b", Region: "b", Sync: sync,
		Extra: append([]string{"--peer-regions", "a", "--leafnode-remote", "nats-leaf://" + link(leaf)}, extra...)})
	c := NewClient(b.HTTPURL, 5*time.Second)
	defer c.Close()
	waitFor(t, 20*time.Second, func() error {
		st, err := regionStatus(context.Background(), c, "a")
		if err != nil {
			return err
		}
		if !st.Reachable {
			return fmt.Errorf("b does not reach a yet: %+v", st)
		}
		return nil
	})
	return a, b
}

// regionJSON is one region of GET /v1/regions.
type regionJSON struct {
	Name      string `json:"name"`
	Writer    string `json:"writer"`
	Epoch     uint64 `json:"epoch"`
	Reachable bool   `json:"reachable"`
	LastSeq   uint64 `json:"last_seq"`
	MirrorLag uint64 `json:"mirror_lag"`
	// Verify is capacityd verify's last verdict on the region.
	Verify *struct {
		OK         bool   `json:"ok"`
		Head       string `json:"head"`
		Copies     int    `json:"copies"`
		ReadModels int    `json:"read_models"`
		Summary    string `json:"summary"`
	} `json:"verify"`
}

// regionStatus returns region as the instance behind c sees it.
func regionStatus(ctx context.Context, c *Client, region string) (regionJSON, error) {
	r := c.Do(ctx, http.MethodGet, "/v1/regions", nil, nil)
	if r.Outcome != OK {
		return regionJSON{}, errNotOK("GET /v1/regions", r)
	}
	var out struct {
		Regions []regionJSON `json:"regions"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return regionJSON{}, err
	}
	for _, st := range out.Regions {
		if st.Name == region {
			return st, nil
		}
	}
	return regionJSON{}, fmt.Errorf("no region %s in %s", region, r.Body)
}

// waitFor polls f until it returns nil, failing the test with its last error after total.
func waitFor(t *testing.T, total time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", total, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRegionsHoldsInAVisibleInB: holds acknowledged in region a appear in
// region b's availability (b's mirror of a's stream, b's read models);
// replication lag per hold (ack in a to visible in b's read model) printed.
func TestRegionsHoldsInAVisibleInB(t *testing.T) {
	holds := 10000
	if *soak > 0 {
		holds = max(holds, int(soak.Seconds()*1000))
	}
	const pools, clients = 100, 16
	a, b := startTwoRegions(t, "always")
	ctx := context.Background()
	ca, cb := NewClient(a.HTTPURL, 10*time.Second), NewClient(b.HTTPURL, 10*time.Second)
	defer ca.Close()
	defer cb.Close()
	def := definition(holds)
	for i := range pools {
		if err := ca.DefinePool(ctx, fmt.Sprintf("ra-%d", i), def); err != nil {
			t.Fatal(err)
		}
	}

	// b's read-model position of a's stream, sampled every 2 ms.
	sampler := samplePositions(ctx, cb, "a", 2*time.Millisecond)
	defer sampler.stop()

	type ack struct {
		at  time.Time
		seq uint64
	}
	acks := make([]ack, holds)
	next := make(chan int)
	var failed sync.Once
	var firstErr error
	begin := time.Now()
	var cw sync.WaitGroup
	for range clients {
		cw.Go(func() {
			for i := range next {
				pool := fmt.Sprintf("ra-%d", i%pools)
				r := ca.Do(ctx, http.MethodPost, "/v1/pools/"+pool+"/holds",
					map[string]any{"reservation_id": fmt.Sprintf("h-%d", i), "quantity": 1, "ttl": "1h"}, nil)
				at := time.Now()
				var res struct {
					PoolVersion uint64 `json:"pool_version"`
				}
				if r.Outcome != OK || json.Unmarshal(r.Body, &res) != nil {
					failed.Do(func() { firstErr = errNotOK("hold "+pool, r) })
					continue
				}
				acks[i] = ack{at, res.PoolVersion}
			}
		})
	}
	for i := range holds {
		next <- i
	}
	close(next)
	cw.Wait()
	elapsed := time.Since(begin)
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	var maxSeq uint64
	for _, a := range acks {
		maxSeq = max(maxSeq, a.seq)
	}
	// Every hold visible in b: a's pools held in full in b's availability.
	waitFor(t, 30*time.Second, func() error {
		r := cb.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/availability?limit=1000&min_position=a:%d", maxSeq), nil, nil)
		if r.Outcome != OK {
			return errNotOK("availability in b", r)
		}
		var page struct {
			Pools []struct {
				ID         string `json:"id"`
				HomeRegion string `json:"home_region"`
				Held       int    `json:"held"`
			} `json:"pools"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			return err
		}
		held, n := 0, 0
		for _, p := range page.Pools {
			if p.HomeRegion == "a" {
				held += p.Held
				n++
			}
		}
		if held != holds || n != pools {
			return fmt.Errorf("b sees %d of a's pools holding %d, want %d holding %d", n, held, pools, holds)
		}
		return nil
	})
	st, err := regionStatus(ctx, cb, "a")
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSeq < maxSeq || st.Writer != "a" {
		t.Errorf("b's view of a = %+v, want last_seq >= %d, writer a", st, maxSeq)
	}
	samples := sampler.stop()

	// Replication lag of each hold: its ack in a to the first sample of b's
	// read model at or past its sequence (the 2 ms sampling is included).
	lags := make([]time.Duration, 0, holds)
	for _, a := range acks {
		if d, ok := samples.after(a.seq, a.at); ok {
			lags = append(lags, d)
		}
	}
	if len(lags) < holds*9/10 {
		t.Fatalf("only %d of %d holds were seen in b's samples", len(lags), holds)
	}
	t.Logf("%d holds in region a in %v (%.0f holds/s, %d clients, --sync always); replication lag a -> b read model: %s (%d samples)",
		holds, elapsed.Round(time.Millisecond), float64(holds)/elapsed.Seconds(), clients, quantiles(lags), len(samples))
}
