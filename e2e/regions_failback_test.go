package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRegionsFailback: the whole chain. Holds on region a's pools; kill -9
// of a; takeover in b (epoch 1); traffic in b, and a hold with a 1 s ttl
// that b's sweeper must expire; a returns: fenced, its old stream set
// aside whole with the tail reported, its copy a fresh mirror of b's head,
// its read models showing b's holds; then failback by handover under load
// (clients on both regions), `capacityd region promote` in a: a writes
// again at epoch 2. Checked: every hold acknowledged by b or by the
// returned a (before, during and after the failback) is in a's head (0
// lost); b's copy follows a again; `capacityd verify` exits 0 with both
// copies equal (lag 0), the set-aside stream reported.
func TestRegionsFailback(t *testing.T) {
	a, b := startTwoRegions(t, "always")
	ctx := context.Background()
	ca, cb := NewClient(a.HTTPURL, 5*time.Second), NewClient(b.HTTPURL, 5*time.Second)
	defer ca.Close()
	defer cb.Close()
	const npools, clients = 12, 4
	pools := definePoolsIn(t, ca, cb, "a", "fb", npools, 1_000_000)

	var (
		mu             sync.Mutex
		beforeKill     []ackedHold // acknowledged by a before the kill: the window may lose some
		afterTakeover  []ackedHold // acknowledged after b took over: none may be lost
		okBefore, okAf atomic.Int64
	)
	traffic, stopA := context.WithCancel(ctx)
	var wgA sync.WaitGroup
	for i := range clients {
		wgA.Go(func() { holdLoop(traffic, ca, pools, fmt.Sprintf("k%d", i), &beforeKill, &mu, &okBefore) })
	}
	waitFor(t, 30*time.Second, func() error {
		if n := okBefore.Load(); n < 400 {
			return fmt.Errorf("%d holds acknowledged in a, want 400 before the fault", n)
		}
		return nil
	})
	a.Kill9()
	stopA()
	wgA.Wait()

	takeover := takeOver(t, cb, "a", "takeover of a in b")

	// Traffic in b from here to the end; a hold b's sweeper must expire.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopLoad(); wg.Wait() }()
	for i := range clients {
		wg.Go(func() { holdLoop(loadCtx, cb, pools, fmt.Sprintf("b%d", i), &afterTakeover, &mu, &okAf) })
	}
	waitFor(t, 10*time.Second, func() error {
		r := cb.Do(ctx, http.MethodPost, "/v1/pools/"+pools[0]+"/holds", map[string]any{"reservation_id": "lapses-in-b", "quantity": 1, "ttl": "1s"}, nil)
		if r.Outcome != OK {
			return errNotOK("short hold in b", r)
		}
		return nil
	})
	waitFor(t, 30*time.Second, func() error {
		if n := okAf.Load(); n < 200 {
			return fmt.Errorf("%d holds acknowledged in b, want 200 before a returns", n)
		}
		return nil
	})

	// a returns: fenced, following b's head, its tail kept aside.
	a.Restart(t)
	waitFor(t, 30*time.Second, func() error {
		st, err := selfStatus(ctx, ca)
		if err != nil {
			return err
		}
		if st.Writer != "b" || st.Epoch != 1 {
			return fmt.Errorf("a after its return: %+v, want fenced (writer b, epoch 1)", st)
		}
		if st.Tail != nil && (st.Tail.Stream != "CAPACITY_A_FENCED_1" || st.Tail.FirstSeq != takeover.LastSeq+1) {
			return fmt.Errorf("a's tail %+v, want kept in CAPACITY_A_FENCED_1 from %d", st.Tail, takeover.LastSeq+1)
		}
		return nil
	})
	returned, _ := selfStatus(ctx, ca)
	window := 0
	for _, h := range beforeKill {
		if r := cb.Do(ctx, http.MethodGet, "/v1/pools/"+h.pool+"/reservations/"+h.id, nil, nil); r.Status == http.StatusNotFound {
			window++
		}
	}
	if window > 0 && returned.Tail == nil {
		t.Errorf("%d holds acknowledged by a never reached b, but a reports no tail", window)
	}
	// a's read models follow the head: a hold b acknowledged, looked up in a.
	mu.Lock()
	probe := afterTakeover[len(afterTakeover)-1]
	mu.Unlock()
	waitFor(t, 20*time.Second, func() error {
		r := ca.Do(ctx, http.MethodGet, "/v1/reservations/"+probe.id, nil, nil)
		if r.Outcome != OK || !strings.Contains(string(r.Body), probe.pool) {
			return fmt.Errorf("hold %s acknowledged by b not in a's read models: %d %s", probe.id, r.Status, r.Body)
		}
		return nil
	})
	// b's sweeper expired the short hold of a's pool it writes.
	waitFor(t, 20*time.Second, func() error {
		r := cb.Do(ctx, http.MethodGet, "/v1/pools/"+pools[0]+"/reservations/lapses-in-b", nil, nil)
		if r.Outcome != OK || !strings.Contains(string(r.Body), `"expired"`) {
			return fmt.Errorf("short hold in b: %d %s, want expired by b's sweeper", r.Status, r.Body)
		}
		return nil
	})

	// Failback under load: clients on a too (forwarded to b until a writes).
	okAtFailback := okAf.Load()
	for i := range clients {
		wg.Go(func() { holdLoop(loadCtx, ca, pools, fmt.Sprintf("r%d", i), &afterTakeover, &mu, &okAf) })
	}
	var failback struct {
		Mode    string `json:"mode"`
		Epoch   uint64 `json:"epoch"`
		LastSeq uint64 `json:"last_seq"`
		TookMS  int64  `json:"took_ms"`
	}
	start := time.Now()
	waitFor(t, 30*time.Second, func() error {
		out, err := tryCapacityd("region", "promote", "--url", a.HTTPURL, "a")
		if err != nil {
			return fmt.Errorf("capacityd region promote a in a: %v: %s", err, out)
		}
		return json.Unmarshal([]byte(out), &failback)
	})
	failbackTook := time.Since(start)
	if failback.Mode != "handover" || failback.Epoch != 2 {
		t.Fatalf("failback answered %+v, want a handover at epoch 2", failback)
	}
	before := okAf.Load()
	waitFor(t, 30*time.Second, func() error {
		if n := okAf.Load(); n < before+300 {
			return fmt.Errorf("%d holds acknowledged after the failback, want 300", n-before)
		}
		return nil
	})
	stopLoad()
	wg.Wait()

	lost := 0
	mu.Lock()
	acked := append([]ackedHold(nil), afterTakeover...)
	mu.Unlock()
	for _, h := range acked {
		r := ca.Do(ctx, http.MethodGet, "/v1/pools/"+h.pool+"/reservations/"+h.id, nil, nil)
		if r.Status == http.StatusNotFound {
			lost++
		} else if r.Outcome != OK {
			t.Fatal(errNotOK("reservation in a", r))
		}
	}
	if lost != 0 {
		t.Errorf("%d of %d holds acknowledged after the takeover are missing from a's head after the failback", lost, len(acked))
	}
	st, err := selfStatus(ctx, ca)
	if err != nil || st.Writer != "a" || st.Epoch != 2 {
		t.Fatalf("a after the failback: %+v, %v; want writer a, epoch 2", st, err)
	}
	// b follows a again: its copy a mirror of a's head, caught up.
	waitFor(t, 30*time.Second, func() error {
		sb, err := regionStatus(ctx, cb, "a")
		if err != nil {
			return err
		}
		if sb.Writer != "a" || sb.Epoch != 2 || sb.LastSeq != st.LastSeq || sb.MirrorLag != 0 {
			return fmt.Errorf("b's copy of a: %+v, want writer a at epoch 2, last_seq %d, lag 0", sb, st.LastSeq)
		}
		return nil
	})
	report := runCapacityd(t, "verify", "--nats-url", a.NATSURL, "--region", "a", "--domains", "a,b")
	if !strings.Contains(report, "domain b: prefix of the head; last_seq "+fmt.Sprint(st.LastSeq)+", lag 0, missing 0") {
		t.Errorf("verify after the failback: want b's copy equal to a's head:\n%s", report)
	}
	for _, d := range []string{"a", "b"} {
		if !strings.Contains(report, "domain "+d+": read models equal a fresh fold") {
			t.Errorf("verify after the failback: want region %s's read models equal a fresh fold of its copy:\n%s", d, report)
		}
	}
	t.Logf("capacityd verify after the failback:\n%s", report)
	// verify --watch exports the same as metrics.
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	wctx, stopWatch := context.WithCancel(ctx)
	watch := exec.CommandContext(wctx, capacitydBin, "verify", "--nats-url", a.NATSURL, "--region", "a", "--domains", "a,b", "--watch", "200ms", "--metrics-listen", addr)
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stopWatch(); _ = watch.Wait() }()
	waitFor(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range []string{`capacity_verify_ok{region="a"} 1`, `capacity_verify_copy_lag{domain="b",region="a"} 0`, `capacity_verify_head_epoch{region="a"} 2`,
			`capacity_verify_readmodel_mismatch{domain="a",region="a"} 0`, `capacity_verify_readmodel_mismatch{domain="b",region="a"} 0`} {
			if !strings.Contains(string(body), line) {
				return fmt.Errorf("verify --watch metrics lack %q:\n%s", line, body)
			}
		}
		return nil
	})
	t.Logf("failback: takeover in b at last_seq %d; a returned fenced with tail %+v (%d holds acknowledged by a before kill -9 never reached b, kept there); handover back to a at last_seq %d, epoch 2, took %d ms in a (%v from the first promote call to the answer, retries included; %d holds acknowledged from the failback start to the end); %d holds acknowledged after the takeover, %d lost",
		takeover.LastSeq, returned.Tail, window, failback.LastSeq, failback.TookMS, failbackTook.Round(time.Millisecond), okAf.Load()-okAtFailback, len(acked), lost)
}
