package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// definePoolsIn defines n pools named prefix-0.. with the given capacity
// through home, one after the other, and waits until the instance behind
// peer knows the last one (so all of them: they replicate in order) with
// home region region.
func definePoolsIn(t *testing.T, home, peer *Client, region, prefix string, n, capacity int) []string {
	t.Helper()
	pools := make([]string, n)
	for i := range pools {
		pools[i] = fmt.Sprintf("%s-%d", prefix, i)
		if err := home.DefinePool(context.Background(), pools[i], definition(capacity)); err != nil {
			t.Fatal(err)
		}
	}
	waitHome(t, peer, pools[n-1], region)
	return pools
}

// waitHome waits until the instance behind c knows pool and its home region.
func waitHome(t *testing.T, c *Client, pool, home string) {
	t.Helper()
	waitFor(t, 20*time.Second, func() error {
		r := c.Do(context.Background(), http.MethodGet, "/v1/availability?limit=1000", nil, nil)
		if r.Outcome != OK {
			return errNotOK("availability", r)
		}
		var page struct {
			Pools []struct {
				ID         string `json:"id"`
				HomeRegion string `json:"home_region"`
			} `json:"pools"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			return err
		}
		for _, p := range page.Pools {
			if p.ID == pool && p.HomeRegion == home {
				return nil
			}
		}
		return fmt.Errorf("%s does not know pool %s of region %s yet", c.BaseURL, pool, home)
	})
}

// promotion is the answer to POST /v1/admin/regions/{region}/promote.
type promotion struct {
	Mode       string          `json:"mode"`
	Epoch      uint64          `json:"epoch"`
	LastSeq    uint64          `json:"last_seq"`
	Incomplete json.RawMessage `json:"incomplete_commit"`
}

// takeOver promotes region's copy in the instance behind c and fails the
// test (naming what) unless the answer is the first takeover, at epoch 1.
func takeOver(t *testing.T, c *Client, region, what string) promotion {
	t.Helper()
	r := c.Do(context.Background(), http.MethodPost, "/v1/admin/regions/"+region+"/promote", nil, nil)
	want(t, what, r, http.StatusOK, "")
	var p promotion
	if err := json.Unmarshal(r.Body, &p); err != nil || p.Mode != "takeover" || p.Epoch != 1 {
		t.Fatalf("%s answered %s, want a takeover at epoch 1", what, r.Body)
	}
	return p
}

// lastSeqOf returns region's last sequence as the instance behind c reports it.
func lastSeqOf(t *testing.T, c *Client, region string) uint64 {
	t.Helper()
	st, err := regionStatus(context.Background(), c, region)
	if err != nil {
		t.Fatal(err)
	}
	return st.LastSeq
}

// holdLatencies sends n sequential holds of one unit to pool through c and
// returns their latencies, sorted.
func holdLatencies(t *testing.T, c *Client, pool, prefix string, n int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		r := c.Do(context.Background(), http.MethodPost, "/v1/pools/"+pool+"/holds",
			map[string]any{"reservation_id": fmt.Sprintf("%s-%d", prefix, i), "quantity": 1, "ttl": "1h"}, nil)
		if r.Outcome != OK {
			t.Fatal(errNotOK("hold "+pool+" via "+c.BaseURL, r))
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out
}

func quantile(d []time.Duration, p float64) time.Duration {
	return d[int(p*float64(len(d)-1))].Round(10 * time.Microsecond)
}

// TestRegionsForwarding: writes for region a's pools sent to region b are
// carried out in a (they land in a's stream, not b's) and answered as if
// local; a forwarded hold's latency is printed beside a local one's; with
// a's capacityd (and its NATS) gone, b answers 503 region-unavailable
// naming a, quickly, and writes nothing.
func TestRegionsForwarding(t *testing.T) {
	a, b := startTwoRegions(t, "always")
	ctx := context.Background()
	ca, cb := NewClient(a.HTTPURL, 10*time.Second), NewClient(b.HTTPURL, 10*time.Second)
	defer ca.Close()
	defer cb.Close()
	const n = 400
	if err := ca.DefinePool(ctx, "fa-1", definition(10*n)); err != nil {
		t.Fatal(err)
	}
	waitHome(t, cb, "fa-1", "a")
	bBefore := lastSeqOf(t, cb, "b")

	// Each operation of the API, sent to b for a's pool.
	r := cb.Do(ctx, http.MethodPost, "/v1/pools/fa-1/holds", map[string]any{"reservation_id": "f1", "quantity": 2, "ttl": "1h"}, nil)
	want(t, "forwarded hold", r, http.StatusCreated, "")
	var res struct {
		Status      string `json:"status"`
		PoolVersion uint64 `json:"pool_version"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil || res.Status != "held" {
		t.Fatalf("forwarded hold answered %s", r.Body)
	}
	want(t, "forwarded extend", cb.Do(ctx, http.MethodPost, "/v1/pools/fa-1/reservations/f1/extend", map[string]any{"ttl": "2h"}, nil), http.StatusOK, "")
	want(t, "forwarded confirm", cb.Do(ctx, http.MethodPost, "/v1/pools/fa-1/reservations/f1/confirm", nil, nil), http.StatusOK, "")
	want(t, "forwarded release of an unknown id", cb.Do(ctx, http.MethodPost, "/v1/pools/fa-1/reservations/nope/release", nil, nil), http.StatusNotFound, "not-found")
	want(t, "forwarded change", cb.Do(ctx, http.MethodPatch, "/v1/pools/fa-1", map[string]any{"capacity": 10*n + 1}, nil), http.StatusOK, "")
	want(t, "forwarded booking", cb.Do(ctx, http.MethodPost, "/v1/bookings",
		map[string]any{"booking_id": "fb1", "items": []map[string]any{{"pool": "fa-1", "quantity": 1}}, "ttl": "1h"}, nil), http.StatusCreated, "")
	want(t, "strongly consistent read, forwarded", cb.Do(ctx, http.MethodGet, "/v1/pools/fa-1", nil, nil), http.StatusOK, "")

	// Landed in a's stream: a's own read sees the hold; b's stream did not move.
	r = ca.Do(ctx, http.MethodGet, "/v1/pools/fa-1/reservations/f1", nil, nil)
	want(t, "the forwarded hold, read in a", r, http.StatusOK, "")
	if got := lastSeqOf(t, cb, "b"); got != bBefore {
		t.Errorf("b's stream moved from %d to %d: something was written in b", bBefore, got)
	}

	// Cost: the same sequential holds, local in a and forwarded through b.
	local := holdLatencies(t, ca, "fa-1", "local", n)
	forwarded := holdLatencies(t, cb, "fa-1", "fwd", n)
	t.Logf("hold latency over HTTP, %d sequential holds each (--sync always): local in a p50 %v p99 %v; sent to b, forwarded to a p50 %v p99 %v",
		n, quantile(local, 0.5), quantile(local, 0.99), quantile(forwarded, 0.5), quantile(forwarded, 0.99))

	// a gone (kill -9 of its capacityd and its embedded NATS): b refuses fast.
	a.Kill9()
	bBefore = lastSeqOf(t, cb, "b")
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		r := cb.Do(ctx, http.MethodPost, "/v1/pools/fa-1/holds", map[string]any{"reservation_id": fmt.Sprintf("down-%d", i), "quantity": 1}, nil)
		took := time.Since(start)
		worst = max(worst, took)
		if r.Status != http.StatusServiceUnavailable || r.Problem != "region-unavailable" {
			t.Fatalf("hold with a down: %d %s %s, want 503 region-unavailable", r.Status, r.Problem, r.Body)
		}
		var p struct {
			Region string `json:"region"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil || p.Region != "a" {
			t.Fatalf("problem %s does not name region a", r.Body)
		}
	}
	if worst > 2500*time.Millisecond {
		t.Errorf("slowest refusal took %v, want within the 2 s forward timeout", worst)
	}
	t.Logf("with region a down: 20 holds refused 503 region-unavailable, slowest in %v", worst.Round(time.Millisecond))
	if got := lastSeqOf(t, cb, "b"); got != bBefore {
		t.Errorf("b's stream moved from %d to %d while a was down", bBefore, got)
	}
}
