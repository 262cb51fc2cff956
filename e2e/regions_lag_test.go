package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/streams"
	"github.com/nats-io/nats.go/jetstream"
)

// lagRate is the offered load of TestRegionsReplicationLagUnderLoad.
var lagRate = flag.Int("lag-rate", 5000, "holds a second offered by TestRegionsReplicationLagUnderLoad")

// TestRegionsReplicationLagUnderLoad: an open-loop offered load of 5,000
// holds/s (-lag-rate) (sent on schedule whatever the answers do, up to 1,024 in
// flight; what is not sent within the 6 s is not sent) over 400 of region
// a's pools; per hold, the replication
// lag from its ack in a to its message in b's mirror of a's stream (an
// ordered consumer on b's copy, timed on arrival) and to b's read model
// reflecting it (sampled every ~5 ms, as in TestRegionsHoldsInAVisibleInB).
// Printed, not asserted (the machine is shared): offered and achieved
// rates, lag p50/p99/max. Asserted: every acknowledged hold is in b's copy
// (its Held event with its reservation id at the sequence a answered), and
// b's read model holds them all.
func TestRegionsReplicationLagUnderLoad(t *testing.T) {
	const npools, maxInflight = 400, 1024
	rate := *lagRate
	length := 6 * time.Second
	if *soak > 0 {
		length = max(length, *soak)
	}
	total := int(length.Seconds() * float64(rate))
	a, b := startTwoRegions(t, "always")
	ctx := context.Background()
	ca, cb := NewClient(a.HTTPURL, 10*time.Second), NewClient(b.HTTPURL, 10*time.Second)
	defer ca.Close()
	defer cb.Close()
	pools := make([]string, npools)
	defineAll(t, ca, pools, "lag", definition(1_000_000))
	// The pools were defined in parallel: the last name is not the last
	// definition. Wait for b's copy to hold all of a's stream as it is now.
	defined := lastSeqOf(t, ca, "a")
	waitHome(t, cb, pools[npools-1], "a")

	// b's copy of a's stream, from its next message on: arrival time and
	// the holds each message carries.
	type arrival struct {
		at    time.Time
		holds []string
	}
	var (
		amu      sync.Mutex
		arrived  = map[uint64]arrival{}
		badMsgs  []string
		received atomic.Int64
	)
	nc, js := connectJS(t, b.NATSURL)
	defer nc.Close()
	mirror, err := js.Stream(ctx, "CAPACITY_A")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() error {
		info, err := mirror.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.LastSeq < defined {
			return fmt.Errorf("b's copy of a's stream at %d, a's definitions end at %d", info.State.LastSeq, defined)
		}
		return nil
	})
	from := mirror.CachedInfo().State.LastSeq + 1
	cons, err := mirror.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		at := time.Now()
		meta, err := m.Metadata()
		if err != nil {
			return
		}
		rec, err := streams.Decode(m.Subject(), meta.Sequence.Stream, meta.Timestamp, m.Headers(), m.Data())
		var events []capacity.Event
		if err == nil {
			events, err = rec.Events()
		}
		var holds []string
		for _, e := range events {
			if h, ok := e.(capacity.Held); ok {
				holds = append(holds, rec.Pool+"/"+h.ReservationID)
			}
		}
		amu.Lock()
		arrived[meta.Sequence.Stream] = arrival{at, holds}
		if err != nil {
			badMsgs = append(badMsgs, fmt.Sprintf("seq %d: %v", meta.Sequence.Stream, err))
		}
		amu.Unlock()
		received.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	sampler := samplePositions(ctx, cb, "a", 5*time.Millisecond)
	defer sampler.stop()

	// The open-loop load: hold i is due at begin + i/rate; a late sender
	// catches up at once (the schedule is kept, not the spacing).
	tr := &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512, IdleConnTimeout: 30 * time.Second}
	load := &Client{HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}, BaseURL: a.HTTPURL}
	defer load.Close()
	type ack struct {
		at   time.Time
		seq  uint64
		hold string
	}
	acks := make([]ack, total)
	var failed, rejected atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	var maxLate time.Duration
	begin := time.Now()
	end := begin.Add(length)
	sent := 0
	for i := range total {
		due := begin.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if time.Now().After(end) {
			break // behind schedule at the end of the window: the rest is not offered
		}
		maxLate = max(maxLate, time.Since(due))
		sem <- struct{}{}
		sent++
		wg.Go(func() {
			defer func() { <-sem }()
			pool, id := pools[i%npools], fmt.Sprintf("l-%d", i)
			r := load.Do(ctx, http.MethodPost, "/v1/pools/"+pool+"/holds", map[string]any{"reservation_id": id, "quantity": 1, "ttl": "1h"}, nil)
			at := time.Now()
			var res struct {
				PoolVersion uint64 `json:"pool_version"`
			}
			switch {
			case r.Outcome == Rejected:
				rejected.Add(1)
				firstErr.CompareAndSwap(nil, errNotOK("hold "+pool, r).Error())
			case r.Outcome != OK || json.Unmarshal(r.Body, &res) != nil:
				failed.Add(1)
				firstErr.CompareAndSwap(nil, errNotOK("hold "+pool, r).Error())
			default:
				acks[i] = ack{at, res.PoolVersion, pool + "/" + id}
			}
		})
	}
	sending := time.Since(begin)
	wg.Wait()
	var lastAck time.Time
	var maxSeq uint64
	acked := 0
	for _, a := range acks {
		if a.seq > 0 {
			acked++
			maxSeq = max(maxSeq, a.seq)
			if a.at.After(lastAck) {
				lastAck = a.at
			}
		}
	}
	if rejected.Load() > 0 {
		t.Errorf("%d holds refused (capacity is ample): first %v", rejected.Load(), firstErr.Load())
	}
	if acked < sent/2 {
		t.Fatalf("only %d of %d holds sent acknowledged (%d failed: %v)", acked, sent, failed.Load(), firstErr.Load())
	}

	// Every acknowledged hold in b's copy at the sequence a answered.
	waitFor(t, 30*time.Second, func() error {
		amu.Lock()
		defer amu.Unlock()
		if _, ok := arrived[maxSeq]; !ok {
			return fmt.Errorf("b's copy of a has %d messages since %d, not yet %d", len(arrived), from, maxSeq)
		}
		return nil
	})
	cc.Stop()
	amu.Lock()
	missing := 0
	lags := make([]time.Duration, 0, acked)
	for _, a := range acks {
		if a.seq == 0 {
			continue
		}
		got, ok := arrived[a.seq]
		if !ok || !slices.Contains(got.holds, a.hold) {
			missing++
			if missing <= 10 {
				t.Errorf("hold %s acknowledged in a at seq %d is not in b's copy there (%v)", a.hold, a.seq, got.holds)
			}
			continue
		}
		lags = append(lags, max(0, got.at.Sub(a.at)))
	}
	bad := badMsgs
	amu.Unlock()
	if missing > 0 || len(bad) > 0 {
		t.Errorf("%d of %d acknowledged holds missing in b's copy; undecodable messages: %v", missing, acked, bad)
	}
	// b's read model holds them all.
	waitFor(t, 30*time.Second, func() error {
		held, err := heldInRegion(ctx, cb, "a", maxSeq)
		if err != nil {
			return err
		}
		if held != acked {
			return fmt.Errorf("b's read model: %d units held in a's pools, want %d", held, acked)
		}
		return nil
	})
	samples := sampler.stop()
	modelLags := make([]time.Duration, 0, acked)
	for _, a := range acks {
		if a.seq == 0 {
			continue
		}
		if d, ok := samples.after(a.seq, a.at); ok {
			modelLags = append(modelLags, d)
		}
	}

	elapsed := lastAck.Sub(begin)
	t.Logf("offered %d holds/s open-loop for %v over %d pools of region a (--sync always, up to %d in flight): %d of %d sent (%.0f/s, at most %v behind schedule), %d acknowledged in %v: %.0f holds/s achieved; %d failed (first: %v)",
		rate, length, npools, maxInflight, sent, total, float64(sent)/sending.Seconds(), maxLate.Round(time.Millisecond),
		acked, elapsed.Round(time.Millisecond), float64(acked)/elapsed.Seconds(), failed.Load(), firstErr.Load())
	t.Logf("replication lag, ack in a -> message in b's copy (%d holds, 0 missing: %v): %s", len(lags), missing == 0, quantiles(lags))
	t.Logf("replication lag, ack in a -> b's read model (%d holds, sampled every ~5 ms, sampling included): %s", len(modelLags), quantiles(modelLags))
}

// quantiles formats p50, p99 and max of ds (sorted here).
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1))].Round(100 * time.Microsecond) }
	return fmt.Sprintf("p50 %v, p99 %v, max %v", q(0.5), q(0.99), ds[len(ds)-1].Round(100*time.Microsecond))
}

// defineAll defines a pool prefix-0 ... in every slot of pools through c,
// 16 at a time.
func defineAll(t *testing.T, c *Client, pools []string, prefix string, def PoolDefinition) {
	t.Helper()
	next := make(chan int)
	errs := make(chan error, len(pools))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range next {
				if err := c.DefinePool(context.Background(), pools[i], def); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range pools {
		pools[i] = fmt.Sprintf("%s-%d", prefix, i)
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// heldInRegion sums the units held in region's pools as the instance
// behind c's read models show them, once they reflect region's stream up
// to minSeq.
func heldInRegion(ctx context.Context, c *Client, region string, minSeq uint64) (int, error) {
	held, cursor := 0, ""
	for {
		path := fmt.Sprintf("/v1/availability?limit=1000&min_position=%s:%d", region, minSeq)
		if cursor != "" {
			path += "&page_token=" + url.QueryEscape(cursor)
		}
		r := c.Do(ctx, http.MethodGet, path, nil, nil)
		if r.Outcome != OK {
			return 0, errNotOK("availability", r)
		}
		var page struct {
			Pools []struct {
				HomeRegion string `json:"home_region"`
				Held       int    `json:"held"`
			} `json:"pools"`
			Next string `json:"next_page_token"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			return 0, err
		}
		for _, p := range page.Pools {
			if p.HomeRegion == region {
				held += p.Held
			}
		}
		if page.Next == "" {
			return held, nil
		}
		cursor = page.Next
	}
}

// positionSample is the read-model position of one region's stream that an
// instance answered with, and when.
type positionSample struct {
	at  time.Time
	pos uint64
}

// positionSampler polls an instance's read-model position of a region.
type positionSampler struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples positionSamples
}

// positionSamples are in time order, so in position order.
type positionSamples []positionSample

// samplePositions polls /v1/availability on c every ~every until stop.
func samplePositions(ctx context.Context, c *Client, region string, every time.Duration) *positionSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &positionSampler{cancel: cancel}
	s.wg.Go(func() {
		for ctx.Err() == nil {
			r := c.Do(ctx, http.MethodGet, "/v1/availability?limit=1", nil, nil)
			at := time.Now()
			var page struct {
				Positions map[string]uint64 `json:"positions"`
			}
			if r.Outcome == OK && json.Unmarshal(r.Body, &page) == nil {
				s.mu.Lock()
				s.samples = append(s.samples, positionSample{at, page.Positions[region]})
				s.mu.Unlock()
			}
			time.Sleep(every)
		}
	})
	return s
}

// stop ends the polling and returns the samples.
func (s *positionSampler) stop() positionSamples {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// after returns the time from since to the first sample at or past seq.
func (ss positionSamples) after(seq uint64, since time.Time) (time.Duration, bool) {
	i, _ := slices.BinarySearchFunc(ss, seq, func(s positionSample, seq uint64) int {
		if s.pos < seq {
			return -1
		}
		return 1
	})
	if i == len(ss) {
		return 0, false
	}
	return max(0, ss[i].at.Sub(since)), true
}
