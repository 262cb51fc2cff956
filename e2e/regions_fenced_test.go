package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRegionsFencedWhileRunningFollowsHead: region a is cut off from b (a
// proxy on the leaf link drops it) but keeps running and taking holds,
// which b never receives (a diverged tail); b takes over a's pools and
// takes holds of its own; the link heals. a, still running, learns the
// term, is fenced, sets its copy aside (CAPACITY_A_FENCED_1, tail kept),
// follows b's head and rebuilds its read models from it, without a
// restart: its read models show b's holds and none of the tail's, the
// set-aside stream holds the tail, and a failback to a is a handover that
// loses nothing b acknowledged.
func TestRegionsFencedWhileRunningFollowsHead(t *testing.T) {
	var link *proxy
	a, b := startTwoRegionsLinked(t, "always", func(leaf string) string {
		link = startProxy(t, leaf)
		return link.Addr()
	})
	ctx := context.Background()
	ca, cb := NewClient(a.HTTPURL, 5*time.Second), NewClient(b.HTTPURL, 5*time.Second)
	defer ca.Close()
	defer cb.Close()
	pools := definePoolsIn(t, ca, cb, "a", "fw", 4, 1000)
	hold := func(c *Client, id string) uint64 {
		t.Helper()
		pool := pools[len(id)%len(pools)]
		r := c.Do(ctx, http.MethodPost, "/v1/pools/"+pool+"/holds", map[string]any{"reservation_id": id, "quantity": 1, "ttl": "1h"}, nil)
		if r.Outcome != OK {
			t.Fatal(errNotOK("hold "+id+" through "+c.BaseURL, r))
		}
		var res struct {
			PoolVersion uint64 `json:"pool_version"`
		}
		if err := json.Unmarshal(r.Body, &res); err != nil {
			t.Fatal(err)
		}
		return res.PoolVersion
	}
	var shared uint64
	for i := range 40 {
		shared = max(shared, hold(ca, fmt.Sprintf("shared-%d", i)))
	}
	waitFor(t, 20*time.Second, func() error {
		st, err := regionStatus(ctx, cb, "a")
		if err != nil || st.LastSeq < shared {
			return fmt.Errorf("b's copy of a: %+v, %v; want last_seq >= %d", st, err, shared)
		}
		return nil
	})

	// Cut off: a goes on writing (a tail b never receives); b takes over.
	link.Cut()
	var tail []string
	for i := range 20 {
		id := fmt.Sprintf("tail-%d", i)
		hold(ca, id)
		tail = append(tail, id)
	}
	takeover := takeOver(t, cb, "a", "takeover of a in b while a is cut off")
	if takeover.LastSeq != shared {
		t.Fatalf("takeover in b from %d, want from %d", takeover.LastSeq, shared)
	}
	var inB []string
	for i := range 30 {
		id := fmt.Sprintf("b-%d", i)
		hold(cb, id)
		inB = append(inB, id)
	}

	// The link heals: a, running all along, is fenced and follows b.
	healed := time.Now()
	link.Heal()
	starts := a.starts
	waitFor(t, 30*time.Second, func() error {
		st, err := selfStatus(ctx, ca)
		if err != nil {
			return err
		}
		if st.Writer != "b" || st.Epoch != 1 || st.Tail == nil || st.Tail.Stream != "CAPACITY_A_FENCED_1" {
			return fmt.Errorf("a after the heal: %+v (tail %+v), want fenced with its tail set aside in CAPACITY_A_FENCED_1", st, st.Tail)
		}
		return nil
	})
	followed := time.Since(healed)
	if a.starts != starts || !a.running() {
		t.Fatalf("a was restarted (%d starts, running %v): the point is that it was not", a.starts, a.running())
	}
	self, _ := selfStatus(ctx, ca)
	if self.Tail.FirstSeq != shared+1 || self.Tail.Count != 20 {
		t.Errorf("a's tail %+v, want 20 messages from %d", self.Tail, shared+1)
	}
	// Its read models: b's holds, the shared ones, none of the tail's.
	headSeq := lastSeqOf(t, cb, "a")
	waitFor(t, 30*time.Second, func() error {
		for _, id := range append([]string{"shared-0", "shared-39"}, inB...) {
			r := ca.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/reservations/%s?min_position=a:%d", id, headSeq), nil, nil)
			if r.Outcome != OK || !strings.Contains(string(r.Body), id) {
				return fmt.Errorf("hold %s not in a's read models: %d %s", id, r.Status, r.Body)
			}
		}
		return nil
	})
	for _, id := range tail {
		r := ca.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/reservations/%s?min_position=a:%d", id, headSeq), nil, nil)
		if r.Status != http.StatusNotFound {
			t.Errorf("hold %s of a's diverged tail still in a's read models: %d %s", id, r.Status, r.Body)
		}
	}
	held, err := heldInRegion(ctx, ca, "a", headSeq)
	if err != nil {
		t.Fatal(err)
	}
	if want := 40 + len(inB); held != want {
		t.Errorf("a's read models hold %d units in a's pools, want %d (b's head)", held, want)
	}
	// The tail is kept whole in the set-aside stream.
	asideIDs := map[string]bool{}
	for _, ev := range waitSetAside(t, a.NATSURL, "CAPACITY_A_FENCED_1") {
		asideIDs[ev.ReservationID] = true
	}
	for _, id := range tail {
		if !asideIDs[id] {
			t.Errorf("hold %s of a's tail is not in CAPACITY_A_FENCED_1", id)
		}
	}

	// Failback without a restart: a handover, nothing b acknowledged lost.
	var failback struct {
		Mode  string `json:"mode"`
		Epoch uint64 `json:"epoch"`
	}
	waitFor(t, 30*time.Second, func() error {
		out, err := tryCapacityd("region", "promote", "--url", a.HTTPURL, "a")
		if err != nil {
			return fmt.Errorf("capacityd region promote a in a: %v: %s", err, out)
		}
		return json.Unmarshal([]byte(out), &failback)
	})
	if failback.Mode != "handover" || failback.Epoch != 2 {
		t.Fatalf("failback answered %+v, want a handover at epoch 2", failback)
	}
	for _, id := range append([]string{"shared-0", "shared-39"}, inB...) {
		r := ca.Do(ctx, http.MethodGet, "/v1/pools/"+pools[len(id)%len(pools)]+"/reservations/"+id, nil, nil)
		if r.Outcome != OK {
			t.Errorf("hold %s missing from a's head after the failback: %d %s", id, r.Status, r.Body)
		}
	}
	hold(ca, "after-failback")
	report := runCapacityd(t, "verify", "--nats-url", a.NATSURL, "--region", "a", "--domains", "a,b")
	t.Logf("a cut off at seq %d, 20 holds in its tail; takeover in b at %d, 30 holds in b; a followed b's head %v after the heal, running (tail %+v); failback: %+v\n%s",
		shared, takeover.LastSeq, followed.Round(time.Millisecond), self.Tail, failback, report)
}
