package web

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
)

// benchClients is how many keep-alive clients the HTTP benchmarks run.
const benchClients = 64

// BenchmarkHTTPHold measures holds of one unit on one hot pool through the
// whole stack: TCP loopback, chi, middleware, the pool's single writer,
// JetStream appends and the answer.
func BenchmarkHTTPHold(b *testing.B) {
	s := newStack(b, func(c *Config) { c.Logger = zerolog.New(io.Discard) })
	res := do(b, s.handler, req{method: "PUT", path: "/v1/pools/hot", body: fmt.Sprintf(slot, capacity.MaxCapacity)})
	wantStatus(b, res, http.StatusCreated)
	srv := httptest.NewServer(s.handler)
	defer srv.Close()
	runHolds(b, srv.URL+"/v1/pools/hot/holds", http.StatusCreated)
	st := s.svc.Stats()
	if st.Appends > 0 {
		b.ReportMetric(float64(st.Commands)/float64(st.Appends), "cmds/append")
	}
}

// BenchmarkHTTPCeiling is the same load against a chi handler that only
// decodes the hold and answers: what HTTP and JSON alone cost.
func BenchmarkHTTPCeiling(b *testing.B) {
	r := chi.NewRouter()
	r.Post("/v1/pools/{pool}/holds", func(w http.ResponseWriter, r *http.Request) {
		pool, err := idParam(r, "pool")
		if err != nil {
			Error(w, r, err)
			return
		}
		h, err := decode[holdRequest](r)
		if err != nil {
			Error(w, r, err)
			return
		}
		ttl, _ := h.ttl()
		now := time.Now()
		encode(w, r, http.StatusCreated, reservationJSON{ReservationID: h.ReservationID, Pool: pool, Quantity: *h.Quantity,
			Status: "held", ExpiresAt: now.Add(ttl), HeldAt: now, TTL: ttl.String(), Version: 1, PoolVersion: 1})
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	runHolds(b, srv.URL+"/v1/pools/hot/holds", http.StatusCreated)
}

// runHolds sends b.N holds with unique reservation ids from benchClients
// keep-alive clients and reports holds/s and latency percentiles.
func runHolds(b *testing.B, url string, wantStatus int) {
	transport := &http.Transport{MaxIdleConns: benchClients, MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	hold := func(i int64) (time.Duration, error) {
		body := fmt.Sprintf(`{"reservation_id":"r%d","quantity":1,"ttl":"10m"}`, i)
		start := time.Now()
		res, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		took := time.Since(start)
		if res.StatusCode != wantStatus {
			return took, fmt.Errorf("status %d", res.StatusCode)
		}
		return took, nil
	}
	// Warm up: open every connection.
	var warm sync.WaitGroup
	for c := range benchClients {
		warm.Go(func() {
			if _, err := hold(-int64(c) - 1); err != nil {
				b.Error(err)
			}
		})
	}
	warm.Wait()

	var next atomic.Int64
	latencies := make([][]time.Duration, benchClients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range benchClients {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				took, err := hold(i)
				if err != nil {
					b.Error(err)
					return
				}
				latencies[c] = append(latencies[c], took)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(latencies...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "holds/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
