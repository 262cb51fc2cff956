package loadgen

import (
	"bufio"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// appendMetrics are the service's running totals of appends to the event
// store, from GET /metrics: the evidence of how much group commit did.
type appendMetrics struct {
	appends  float64 // capacity_append_batch_commands_count
	commands float64 // capacity_append_batch_commands_sum
	events   float64 // capacity_append_batch_events_sum
	seconds  float64 // capacity_append_duration_seconds_sum
}

// scrape reads the service's /metrics and returns every sample whose
// metric name (before its labels) passes keep, keyed by the whole line
// before the value (name and labels); ok is false when there is no
// /metrics to read.
func (c *Client) scrape(ctx context.Context, keep func(name string) bool) (samples map[string]float64, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return nil, false
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, false
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, false
	}
	samples = make(map[string]float64)
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		at := strings.LastIndexByte(line, ' ')
		if at < 0 {
			continue
		}
		key := line[:at]
		name, _, _ := strings.Cut(key, "{")
		if !keep(name) {
			continue
		}
		v, err := strconv.ParseFloat(line[at+1:], 64)
		if err != nil {
			continue
		}
		samples[key] = v
	}
	return samples, sc.Err() == nil
}

// appendFields are the append totals appendMetrics reads.
var appendFields = []string{"capacity_append_batch_commands_count", "capacity_append_batch_commands_sum",
	"capacity_append_batch_events_sum", "capacity_append_duration_seconds_sum"}

// scrapeAppends reads the append totals from the service's /metrics; ok is
// false when the service has none (or no /metrics).
func (c *Client) scrapeAppends(ctx context.Context) (m appendMetrics, ok bool) {
	samples, ok := c.scrape(ctx, func(name string) bool { return slices.Contains(appendFields, name) })
	if !ok {
		return m, false
	}
	found := 0
	for i, p := range []*float64{&m.appends, &m.commands, &m.events, &m.seconds} {
		for key, v := range samples {
			if name, _, _ := strings.Cut(key, "{"); name == appendFields[i] {
				*p += v
				found++
			}
		}
	}
	return m, found >= len(appendFields)
}

// Appends says what the event store saw during a measured window.
type Appends struct {
	Appends           int64   `json:"appends"`
	PerSec            float64 `json:"per_sec"`
	CommandsPerAppend float64 `json:"commands_per_append"` // group commit size
	EventsPerAppend   float64 `json:"events_per_append"`
	MeanAppendMS      float64 `json:"mean_append_ms"` // until the store acknowledged
}

// AppendWatch takes the service's append totals at the start and the end
// of a measured window; use its Start and End as RunConfig hooks.
type AppendWatch struct {
	client     *Client
	ctx        context.Context
	start, end appendMetrics
	at         time.Time
	elapsed    time.Duration
	ok         bool
}

// NewAppendWatch returns a watch on the service client talks to.
func NewAppendWatch(ctx context.Context, client *Client) *AppendWatch {
	return &AppendWatch{client: client, ctx: ctx}
}

// Start takes the totals at the start of the window.
func (w *AppendWatch) Start() {
	w.start, w.ok = w.client.scrapeAppends(w.ctx)
	w.at = time.Now()
}

// End takes the totals at the end of the window.
func (w *AppendWatch) End() {
	var ok bool
	w.end, ok = w.client.scrapeAppends(w.ctx)
	w.ok = w.ok && ok
	w.elapsed = time.Since(w.at)
}

// Result returns what happened between Start and End, or nil when the
// service did not tell.
func (w *AppendWatch) Result() *Appends {
	n := w.end.appends - w.start.appends
	if !w.ok || n <= 0 || w.elapsed <= 0 {
		return nil
	}
	return &Appends{
		Appends:           int64(n),
		PerSec:            n / w.elapsed.Seconds(),
		CommandsPerAppend: (w.end.commands - w.start.commands) / n,
		EventsPerAppend:   (w.end.events - w.start.events) / n,
		MeanAppendMS:      (w.end.seconds - w.start.seconds) / n * 1000,
	}
}
