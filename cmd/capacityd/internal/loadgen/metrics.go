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
		if !keep(metricName(key)) {
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

// metricName returns the metric name of a sample's key (the line before
// its value): the part before the labels.
func metricName(key string) string {
	name, _, _ := strings.Cut(key, "{")
	return name
}

// window takes the samples of some of the service's metrics (those whose
// name passes keep) at the start and the end of a measured window; use its
// Start and End as RunConfig hooks, or around any load.
type window struct {
	client     *Client
	ctx        context.Context
	keep       func(name string) bool
	start, end map[string]float64
	at         time.Time
	elapsed    time.Duration
	ok         bool // both scrapes read
}

// Start takes the samples at the start of the window.
func (w *window) Start() {
	w.start, w.ok = w.client.scrape(w.ctx, w.keep)
	w.at = time.Now()
}

// End takes the samples at the end of the window.
func (w *window) End() {
	var ok bool
	w.end, ok = w.client.scrape(w.ctx, w.keep)
	w.ok = w.ok && ok
	w.elapsed = time.Since(w.at)
}

// delta returns how much the metric name grew over the window, summed over
// its label sets; false unless both scrapes had it.
func (w *window) delta(name string) (float64, bool) {
	var before, after float64
	var inStart, inEnd bool
	for key, v := range w.start {
		if metricName(key) == name {
			before, inStart = before+v, true
		}
	}
	for key, v := range w.end {
		if metricName(key) == name {
			after, inEnd = after+v, true
		}
	}
	return after - before, inStart && inEnd
}

// appendFields are the append totals an AppendWatch reads.
var appendFields = []string{"capacity_append_batch_commands_count", "capacity_append_batch_commands_sum",
	"capacity_append_batch_events_sum", "capacity_append_duration_seconds_sum"}

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
type AppendWatch struct{ window }

// NewAppendWatch returns a watch on the service client talks to.
func NewAppendWatch(ctx context.Context, client *Client) *AppendWatch {
	return &AppendWatch{window{client: client, ctx: ctx, keep: func(name string) bool { return slices.Contains(appendFields, name) }}}
}

// Result returns what happened between Start and End, or nil when the
// service did not tell.
func (w *AppendWatch) Result() *Appends {
	var d [4]float64 // appendFields' growth, in their order
	for i, name := range appendFields {
		v, ok := w.delta(name)
		if !ok {
			return nil
		}
		d[i] = v
	}
	n := d[0]
	if !w.ok || n <= 0 || w.elapsed <= 0 {
		return nil
	}
	return &Appends{
		Appends:           int64(n),
		PerSec:            n / w.elapsed.Seconds(),
		CommandsPerAppend: d[1] / n,
		EventsPerAppend:   d[2] / n,
		MeanAppendMS:      d[3] / n * 1000,
	}
}
