package loadgen

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
)

// ServiceTail is what the service's own histograms (GET /metrics) say
// about a window, beside the latency the load generator saw: whether a
// tail is the service's (its handlers, its appends, its goroutines
// waiting for a CPU) or is made between the two (the network, the HTTP
// client, the generator's own goroutines waiting for a CPU on the same
// machine). The histograms have buckets, so each figure is the upper
// bound of the bucket the quantile falls in: "at most".
type ServiceTail struct {
	Requests int64 `json:"requests"` // HTTP requests the service answered in the window
	// HandlerP50MS and HandlerP99MS bound the time from the request read
	// to the response written, over every route.
	HandlerP50MS float64 `json:"handler_p50_ms_at_most"`
	HandlerP99MS float64 `json:"handler_p99_ms_at_most"`
	// AppendP99MS bounds the event store's appends (publish to ack, and
	// the fsync under --sync always).
	AppendP99MS float64 `json:"append_p99_ms_at_most,omitempty"`
	// FsyncP99MS bounds the group fsync rounds under --sync always
	// (capacity_fsync_round_seconds), a part of each append.
	FsyncP99MS float64 `json:"fsync_round_p99_ms_at_most,omitempty"`
	// SchedP99MS bounds how long a runnable goroutine of the service waited
	// for a processor: CPU starvation (go_sched_latencies_seconds).
	SchedP99MS float64 `json:"sched_wait_p99_ms_at_most,omitempty"`
}

// String is the tail as a clause of a report line.
func (t ServiceTail) String() string {
	s := fmt.Sprintf("service side: p50 ≤ %s, p99 ≤ %s", bound(t.HandlerP50MS), bound(t.HandlerP99MS))
	if t.AppendP99MS > 0 {
		s += ", appends p99 ≤ " + bound(t.AppendP99MS)
	}
	if t.FsyncP99MS > 0 {
		s += " (fsync rounds p99 ≤ " + bound(t.FsyncP99MS) + ")"
	}
	if t.SchedP99MS > 0 {
		s += ", CPU wait p99 ≤ " + bound(t.SchedP99MS)
	}
	return s
}

// bound formats a bucket bound in milliseconds.
func bound(ms float64) string {
	if math.IsInf(ms, 1) {
		return "∞"
	}
	return strconv.FormatFloat(ms, 'g', 3, 64) + "ms"
}

// tailHistograms are the service's histograms a TailWatch reads.
var tailHistograms = []string{"http_request_duration_seconds_bucket", "capacity_append_duration_seconds_bucket",
	"go_sched_latencies_seconds_bucket", "capacity_fsync_round_seconds_bucket"}

// TailWatch takes the service's latency histograms at the start and the end
// of a window; use its Start and End around the load.
type TailWatch struct{ window }

// NewTailWatch returns a watch on the service client talks to.
func NewTailWatch(ctx context.Context, client *Client) *TailWatch {
	return &TailWatch{window{client: client, ctx: ctx, keep: func(name string) bool { return slices.Contains(tailHistograms, name) }}}
}

// Result returns the window's tail, or nil when the service did not tell
// (no /metrics, or fewer than 100 HTTP requests in the window: the NATS
// scenario's holds do not pass through HTTP).
func (w *TailWatch) Result() *ServiceTail {
	if !w.ok {
		return nil
	}
	handler := bucketsOf(w.start, w.end, tailHistograms[0])
	n := handler.count()
	if n < 100 {
		return nil
	}
	// p99 bounds a histogram's p99 in milliseconds; 0 (left out) when it
	// saw nothing in the window.
	p99 := func(name string) float64 {
		if b := bucketsOf(w.start, w.end, name); b.count() > 0 {
			return b.quantile(0.99) * 1000
		}
		return 0
	}
	return &ServiceTail{Requests: int64(n), HandlerP50MS: handler.quantile(0.5) * 1000, HandlerP99MS: handler.quantile(0.99) * 1000,
		AppendP99MS: p99(tailHistograms[1]), SchedP99MS: p99(tailHistograms[2]), FsyncP99MS: p99(tailHistograms[3])}
}

var leLabel = regexp.MustCompile(`le="([^"]+)"`)

// bucketsOf sums name's buckets over every label set (every route, say),
// as the difference between two scrapes.
func bucketsOf(start, end map[string]float64, name string) bucketsView {
	byLE := make(map[float64]float64)
	for key, v := range end {
		if metricName(key) != name {
			continue
		}
		m := leLabel.FindStringSubmatch(key)
		if m == nil {
			continue
		}
		le, err := strconv.ParseFloat(m[1], 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		byLE[le] += v - start[key]
	}
	var b bucketsView
	for le := range byLE {
		b.le = append(b.le, le)
	}
	slices.Sort(b.le)
	for _, le := range b.le {
		b.cum = append(b.cum, byLE[le])
	}
	return b
}

// bucketsView is a cumulative histogram: the count at or below each bound,
// the bounds ascending, the last +Inf.
type bucketsView struct {
	le  []float64
	cum []float64
}

// count is the number of observations.
func (b bucketsView) count() float64 {
	if len(b.cum) == 0 {
		return 0
	}
	return b.cum[len(b.cum)-1]
}

// quantile returns the bound of the first bucket holding at least q of
// the observations: the q-quantile is at most that.
func (b bucketsView) quantile(q float64) float64 {
	want := q * b.count()
	for i, c := range b.cum {
		if c >= want {
			return b.le[i]
		}
	}
	return math.Inf(1)
}
