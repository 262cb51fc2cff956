package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ackedHold is a hold a region acknowledged.
type ackedHold struct{ pool, id string }

// holdLoop sends holds of one unit to random pools through c until ctx
// ends, appending what was acknowledged to acked.
func holdLoop(ctx context.Context, c *Client, pools []string, prefix string, acked *[]ackedHold, mu *sync.Mutex, ok *atomic.Int64) {
	for i := 0; ctx.Err() == nil; i++ {
		pool := pools[rand.IntN(len(pools))]
		id := fmt.Sprintf("%s-%d", prefix, i)
		r := c.Do(ctx, http.MethodPost, "/v1/pools/"+pool+"/holds", map[string]any{"reservation_id": id, "quantity": 1, "ttl": "1h"}, nil)
		if r.Outcome == OK {
			mu.Lock()
			*acked = append(*acked, ackedHold{pool, id})
			mu.Unlock()
			ok.Add(1)
		}
	}
}

// TestRegionsFailover: holds on region a's pools under load; kill -9 of a
// (capacityd and its embedded NATS); promotion in b (a takeover: a does
// not answer); the traffic goes on in b for a's pools. Printed: time from
// the promote call to b's first acknowledged hold, the recovery point, how
// many holds a acknowledged that b never received (the asynchronous
// window). Checked: 0 pools over capacity in b's copy, every hold b
// acknowledged present. Then a returns: it is fenced (its tail reported,
// its writes forwarded to b).
func TestRegionsFailover(t *testing.T) {
	a, b := startTwoRegions(t, "always")
	ctx := context.Background()
	ca, cb := NewClient(a.HTTPURL, 2*time.Second), NewClient(b.HTTPURL, 5*time.Second)
	defer ca.Close()
	defer cb.Close()
	const npools, capacity, clients = 20, 150, 8
	pools := make([]string, npools)
	for i := range pools {
		pools[i] = fmt.Sprintf("fo-%d", i)
		if err := ca.DefinePool(ctx, pools[i], definition(capacity)); err != nil {
			t.Fatal(err)
		}
	}
	waitHome(t, cb, pools[npools-1], "a")

	var (
		mu           sync.Mutex
		ackedA       []ackedHold
		ackedB       []ackedHold
		okA, okB     atomic.Int64
		wgA, wgB     sync.WaitGroup
		trafficA, cA = context.WithCancel(ctx)
	)
	for i := range clients {
		wgA.Go(func() { holdLoop(trafficA, ca, pools, fmt.Sprintf("a%d", i), &ackedA, &mu, &okA) })
	}
	waitFor(t, 30*time.Second, func() error {
		if n := okA.Load(); n < 600 {
			return fmt.Errorf("%d holds acknowledged in a, want 600 before the fault", n)
		}
		return nil
	})
	a.Kill9() // mid-traffic
	cA()
	wgA.Wait()

	start := time.Now()
	r := cb.Do(ctx, http.MethodPost, "/v1/admin/regions/a/promote", nil, nil)
	promoteTook := time.Since(start)
	want(t, "promote a in b", r, http.StatusOK, "")
	var prom struct {
		Mode       string          `json:"mode"`
		Epoch      uint64          `json:"epoch"`
		LastSeq    uint64          `json:"last_seq"`
		Incomplete json.RawMessage `json:"incomplete_commit"`
	}
	if err := json.Unmarshal(r.Body, &prom); err != nil || prom.Mode != "takeover" || prom.Epoch != 1 {
		t.Fatalf("promotion answered %s, want a takeover at epoch 1", r.Body)
	}
	var firstWrite time.Duration
	waitFor(t, 10*time.Second, func() error {
		r := cb.Do(ctx, http.MethodPost, "/v1/pools/"+pools[0]+"/holds", map[string]any{"reservation_id": "first-in-b", "quantity": 1, "ttl": "1h"}, nil)
		if r.Outcome != OK && r.Problem != "insufficient-capacity" {
			return errNotOK("first hold in b", r)
		}
		firstWrite = time.Since(start)
		return nil
	})
	st, err := regionStatus(ctx, cb, "a")
	if err != nil || st.Writer != "b" || st.Epoch != 1 {
		t.Fatalf("b's view of a after promotion: %+v, %v; want writer b, epoch 1", st, err)
	}

	// Traffic goes on in b for a's pools.
	trafficB, cB := context.WithCancel(ctx)
	for i := range clients {
		wgB.Go(func() { holdLoop(trafficB, cb, pools, fmt.Sprintf("b%d", i), &ackedB, &mu, &okB) })
	}
	waitFor(t, 30*time.Second, func() error {
		if n := okB.Load(); n < 300 {
			return fmt.Errorf("%d holds acknowledged in b after the promotion, want 300", n)
		}
		return nil
	})
	cB()
	wgB.Wait()

	// b's copy: no pool over capacity; every hold b acknowledged there;
	// holds a acknowledged that b never received are counted.
	over, held := 0, 0
	for _, pool := range pools {
		r := cb.Do(ctx, http.MethodGet, "/v1/pools/"+pool, nil, nil)
		want(t, "pool in b", r, http.StatusOK, "")
		var p struct {
			Capacity, Held, Confirmed, Overbook int
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		held += p.Held
		if p.Held+p.Confirmed > p.Capacity+p.Overbook {
			over++
			t.Errorf("pool %s over capacity in b: %+v", pool, p)
		}
	}
	missing := func(c *Client, acked []ackedHold) int {
		n := 0
		for _, h := range acked {
			r := c.Do(ctx, http.MethodGet, "/v1/pools/"+h.pool+"/reservations/"+h.id, nil, nil)
			if r.Status == http.StatusNotFound {
				n++
			} else if r.Outcome != OK {
				t.Fatal(errNotOK("reservation in b", r))
			}
		}
		return n
	}
	if n := missing(cb, ackedB); n != 0 {
		t.Errorf("%d holds acknowledged by b after the promotion are missing in b", n)
	}
	window := missing(cb, ackedA)
	t.Logf("failover: %d holds acknowledged in a before kill -9; takeover in b at last_seq %d (promote answered in %v); first acknowledged write in b %v after the promote call; %d holds acknowledged in b after it; asynchronous window: %d holds acknowledged in a never reached b; %d pools over capacity in b (%d units held); incomplete commit: %s",
		len(ackedA), prom.LastSeq, promoteTook.Round(time.Millisecond), firstWrite.Round(time.Millisecond), len(ackedB), window, over, held, orNone(prom.Incomplete))

	// a returns: fenced, its tail reported, its writes forwarded to b.
	a.Restart(t)
	waitFor(t, 20*time.Second, func() error {
		st, err := selfStatus(ctx, ca)
		if err != nil {
			return err
		}
		if st.Writer != "b" || st.Epoch != 1 {
			return fmt.Errorf("a after its return: %+v, want fenced (writer b, epoch 1)", st)
		}
		if window > 0 && (st.Tail == nil || st.Tail.Count == 0) {
			return fmt.Errorf("a lost %d holds to the window but reports no fenced tail: %+v", window, st)
		}
		return nil
	})
	st2, _ := selfStatus(ctx, ca)
	r = ca.Do(ctx, http.MethodPost, "/v1/pools/"+pools[1]+"/holds", map[string]any{"reservation_id": "via-a", "quantity": 1, "ttl": "1h"}, nil)
	if r.Outcome != OK && r.Problem != "insufficient-capacity" {
		t.Fatal(errNotOK("hold sent to the fenced a", r))
	}
	if r.Outcome == OK {
		want(t, "hold sent to a, read in b", cb.Do(ctx, http.MethodGet, "/v1/pools/"+pools[1]+"/reservations/via-a", nil, nil), http.StatusOK, "")
	}
	t.Logf("a returned fenced: writer b at epoch 1, fenced tail %+v", st2.Tail)
	// a's copy follows the head now (its old stream, tail included, set
	// aside): verify passes and reports the aside stream with its tail.
	report, err := tryCapacityd("verify", "--nats-url", b.NATSURL, "--region", "a", "--domains", "a,b")
	if err != nil {
		t.Errorf("verify after a's return: %v\n%s", err, report)
	}
	if st2.Tail != nil && (st2.Tail.Stream != "CAPACITY_A_FENCED_1" || !strings.Contains(report, "set aside CAPACITY_A_FENCED_1")) {
		t.Errorf("a's tail %+v: want it kept in CAPACITY_A_FENCED_1 and reported by verify:\n%s", st2.Tail, report)
	}
	t.Logf("capacityd verify after a's return:\n%s", report)
}

// selfRegion is the serving region in GET /v1/regions, with its tail.
type selfRegion struct {
	regionJSON
	Tail *struct {
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
		Count    uint64 `json:"count"`
		Stream   string `json:"stream"`
	} `json:"fenced_tail"`
}

// selfStatus returns the serving region as it reports itself.
func selfStatus(ctx context.Context, c *Client) (selfRegion, error) {
	r := c.Do(ctx, http.MethodGet, "/v1/regions", nil, nil)
	if r.Outcome != OK {
		return selfRegion{}, errNotOK("GET /v1/regions", r)
	}
	var out struct {
		Region  string       `json:"region"`
		Regions []selfRegion `json:"regions"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return selfRegion{}, err
	}
	for _, st := range out.Regions {
		if st.Name == out.Region {
			return st, nil
		}
	}
	return selfRegion{}, fmt.Errorf("no serving region in %s", r.Body)
}

func orNone(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "none"
	}
	return string(raw)
}
