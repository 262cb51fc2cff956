package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestTailWatch reads the service's histograms before and after a window
// from a /metrics in Prometheus's text format and bounds the quantiles by
// the window's difference, summed over routes: what came before the window
// does not count.
func TestTailWatch(t *testing.T) {
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		// Before the window: 1,000 slow requests. In it: 200 more on the
		// holds route (190 under 5 ms, 10 between 10 and 25 ms) and 100 on
		// another route under 1 ms.
		after := scrapes.Add(1) > 1
		n := func(before, in int) int {
			if after {
				return before + in
			}
			return before
		}
		var b strings.Builder
		b.WriteString("# HELP http_request_duration_seconds x\n# TYPE http_request_duration_seconds histogram\n")
		for _, row := range []struct {
			le          string
			holds, read int
		}{{"0.001", n(0, 0), n(0, 100)}, {"0.005", n(0, 190), n(0, 100)}, {"0.01", n(0, 190), n(0, 100)},
			{"0.025", n(0, 200), n(0, 100)}, {"+Inf", n(1000, 200), n(0, 100)}} {
			fmt.Fprintf(&b, "http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/pools/{pool}/holds\",le=%q} %d\n", row.le, row.holds)
			fmt.Fprintf(&b, "http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/availability\",le=%q} %d\n", row.le, row.read)
		}
		fmt.Fprintf(&b, "capacity_append_duration_seconds_bucket{le=\"0.0025\"} %d\ncapacity_append_duration_seconds_bucket{le=\"+Inf\"} %d\n", n(5, 50), n(5, 50))
		fmt.Fprintf(&b, "capacity_fsync_round_seconds_bucket{le=\"0.001\"} %d\ncapacity_fsync_round_seconds_bucket{le=\"0.01\"} %d\ncapacity_fsync_round_seconds_bucket{le=\"+Inf\"} %d\n", n(0, 98), n(0, 100), n(0, 100))
		w.Write([]byte(b.String()))
	}))
	defer srv.Close()
	client := NewClient(srv.URL, 1)
	defer client.Close()
	w := NewTailWatch(context.Background(), client)
	w.Start()
	w.End()
	got := w.Result()
	if got == nil {
		t.Fatal("no tail")
	}
	// 300 in the window, 100 of them under 1 ms: the median (the 150th)
	// falls in the 5 ms bucket, the 297th in the 25 ms one.
	if got.Requests != 300 || got.HandlerP50MS != 5 || got.HandlerP99MS != 25 || got.AppendP99MS != 2.5 || got.FsyncP99MS != 10 || got.SchedP99MS != 0 {
		t.Fatalf("tail = %+v", *got)
	}
	if s, want := got.String(), "service side: p50 ≤ 5ms, p99 ≤ 25ms, appends p99 ≤ 2.5ms (fsync rounds p99 ≤ 10ms)"; s != want {
		t.Fatalf("String() = %q, want %q", s, want)
	}
	// No /metrics: no tail.
	none := NewTailWatch(context.Background(), NewClient(srv.URL+"/nothing", 1))
	none.Start()
	none.End()
	if r := none.Result(); r != nil {
		t.Fatalf("tail without /metrics = %+v", *r)
	}
}
