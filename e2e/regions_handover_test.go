package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRegionsHandover: a planned handover of region a's pools to b under
// load (clients keep sending holds to a, which forwards them to b once it
// is fenced): 0 holds acknowledged by either region are missing from b's
// copy afterwards, and the command line answers as the API does.
func TestRegionsHandover(t *testing.T) {
	a, b := startTwoRegions(t, "always")
	ctx := context.Background()
	ca, cb := NewClient(a.HTTPURL, 5*time.Second), NewClient(b.HTTPURL, 5*time.Second)
	defer ca.Close()
	defer cb.Close()
	const npools, clients = 10, 6
	pools := definePoolsIn(t, ca, cb, "a", "ho", npools, 100_000)
	var (
		mu    sync.Mutex
		acked []ackedHold
		ok    atomic.Int64
		wg    sync.WaitGroup
	)
	traffic, stop := context.WithCancel(ctx)
	for i := range clients {
		wg.Go(func() { holdLoop(traffic, ca, pools, fmt.Sprintf("h%d", i), &acked, &mu, &ok) })
	}
	waitFor(t, 30*time.Second, func() error {
		if n := ok.Load(); n < 300 {
			return fmt.Errorf("%d holds acknowledged, want 300 before the handover", n)
		}
		return nil
	})
	// Under load the read models lag their streams: verify compares each
	// pool at the sequence the read model reports for it, so both regions'
	// read models equal a fresh fold; b's copy lags a's head and is a
	// prefix of it (the head is read again if the copy, read later, is
	// longer than the head as first read): exit 0.
	loaded := runCapacityd(t, "verify", "--nats-url", b.NATSURL, "--region", "a", "--domains", "a,b")
	for _, d := range []string{"a", "b"} {
		if !strings.Contains(loaded, "domain "+d+": read models equal a fresh fold: 10 pools of region a") {
			t.Errorf("verify under load: want region %s's read models of a's 10 pools equal a fresh fold:\n%s", d, loaded)
		}
	}
	t.Logf("capacityd verify under load:\n%s", loaded)
	out := runCapacityd(t, "region", "promote", "--url", b.HTTPURL, "a")
	var prom struct {
		Mode    string `json:"mode"`
		Epoch   uint64 `json:"epoch"`
		LastSeq uint64 `json:"last_seq"`
		TookMS  int64  `json:"took_ms"`
	}
	if err := json.Unmarshal([]byte(out), &prom); err != nil || prom.Mode != "handover" || prom.Epoch != 1 {
		t.Fatalf("capacityd region promote printed %q, want a handover at epoch 1", out)
	}
	before := ok.Load()
	waitFor(t, 30*time.Second, func() error {
		if n := ok.Load(); n < before+300 {
			return fmt.Errorf("%d holds acknowledged after the handover, want 300", n-before)
		}
		return nil
	})
	stop()
	wg.Wait()
	lost := 0
	for _, h := range acked {
		r := cb.Do(ctx, http.MethodGet, "/v1/pools/"+h.pool+"/reservations/"+h.id, nil, nil)
		if r.Status == http.StatusNotFound {
			lost++
		} else if r.Outcome != OK {
			t.Fatal(errNotOK("reservation in b", r))
		}
	}
	if lost != 0 {
		t.Errorf("%d of %d acknowledged holds are missing from b after the handover", lost, len(acked))
	}
	// a's copy is swapped for a mirror of b's within about a second of the
	// handover; GET /v1/regions answers 503 while its stream is replaced.
	waitFor(t, 10*time.Second, func() error {
		st, err := selfStatus(ctx, ca)
		if err != nil || st.Writer != "b" || st.Epoch != 1 || st.Tail != nil {
			return fmt.Errorf("a after the handover: %+v, %v; want writer b, epoch 1, no tail", st, err)
		}
		return nil
	})
	// Every copy of a's stream is a prefix of the head (b's promoted copy).
	report := runCapacityd(t, "verify", "--nats-url", b.NATSURL, "--region", "a", "--domains", "a,b")
	for _, d := range []string{"a", "b"} {
		if !strings.Contains(report, "domain "+d+": read models equal a fresh fold: 10 pools of region a") {
			t.Errorf("verify after the handover: want region %s's read models of a's 10 pools equal a fresh fold:\n%s", d, report)
		}
	}
	t.Logf("capacityd verify after the handover:\n%s", report)
	// The verdict is published in both domains: each region shows it.
	for _, c := range []*Client{ca, cb} {
		st, err := regionStatus(ctx, c, "a")
		if err != nil {
			t.Fatal(err)
		}
		if v := st.Verify; v == nil || !v.OK || v.Head != "b" || v.ReadModels != 2 {
			t.Errorf("GET /v1/regions: verify on a = %+v, want ok, head b, 2 read models", v)
		}
	}
	t.Logf("handover under load: last_seq %d, took %d ms; %d holds acknowledged (before and after, all sent to a), %d missing in b", prom.LastSeq, prom.TookMS, len(acked), lost)
}

// runCapacityd runs the binary with args to completion and returns its
// standard output; a failure fails the test with its standard error.
func runCapacityd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tryCapacityd(args...)
	if err != nil {
		t.Fatalf("capacityd %v: %v\n%s", args, err, out)
	}
	return out
}

// tryCapacityd runs the binary with args to completion and returns its
// output (standard output, then standard error) and its exit error.
func tryCapacityd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, capacitydBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}
