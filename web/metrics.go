package web

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of the HTTP API and of the write side
// behind it. Create them once per registry with NewMetrics, pass OnAppend
// to pools.Options and the Metrics to Config.
type Metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	appendBatch   prometheus.Histogram
	appendEvents  prometheus.Histogram
	appendLatency prometheus.Histogram
}

// NewMetrics registers the HTTP and append metrics on reg. Metrics already
// registered on reg (by an earlier call) are reused, not duplicated.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status.",
		}, []string{"route", "method", "status"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route", "method"})),
		appendBatch: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "capacity_append_batch_commands",
			Help:    "Commands carried by one append to the event store (group commit size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		})),
		appendEvents: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "capacity_append_batch_events",
			Help:    "Events carried by one append to the event store.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		})),
		appendLatency: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "capacity_append_duration_seconds",
			Help:    "Time one append to the event store took, until acknowledged.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		})),
	}
}

// OnAppend records one append; its signature is pools.Options.OnAppend's.
func (m *Metrics) OnAppend(commands, events int, took time.Duration) {
	m.appendBatch.Observe(float64(commands))
	m.appendEvents.Observe(float64(events))
	m.appendLatency.Observe(took.Seconds())
}

func (m *Metrics) observeRequest(route, method string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(took.Seconds())
}

// watch registers counters and gauges that read the write side's running
// totals at scrape time.
func (m *Metrics) watch(reg prometheus.Registerer, p Pools) {
	if p == nil {
		return
	}
	counter := func(name, help string, read func() uint64) {
		register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(read()) }))
	}
	counter("capacity_holds_accepted_total", "Holds accepted.", func() uint64 { return p.Stats().HoldsAccepted })
	counter("capacity_holds_rejected_total", "Holds refused for capacity, a closed pool or a conflict.", func() uint64 { return p.Stats().HoldsRejected })
	counter("capacity_appends_total", "Successful appends to the event store.", func() uint64 { return p.Stats().Appends })
	counter("capacity_events_appended_total", "Events appended to the event store.", func() uint64 { return p.Stats().Events })
	counter("capacity_append_conflicts_total", "Appends refused because another writer wrote first.", func() uint64 { return p.Stats().Conflicts })
	counter("capacity_append_failures_total", "Appends that failed for other reasons (outcome unknown).", func() uint64 { return p.Stats().AppendFailures })
	counter("capacity_commands_total", "Commands answered by pool entities.", func() uint64 { return p.Stats().Commands })
	counter("capacity_pool_loads_total", "Pools loaded into memory (snapshot + tail, or full replay).", func() uint64 { return p.Stats().Loads })
	counter("capacity_pool_replays_total", "Pool loads that found no usable snapshot.", func() uint64 { return p.Stats().Replays })
	counter("capacity_snapshots_total", "Snapshots written.", func() uint64 { return p.Stats().Snapshots })
	register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "capacity_pools_loaded", Help: "Pools in memory in this process.",
	}, func() float64 { return float64(p.Loaded()) }))
}

// register registers c on reg, or returns the collector already there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("web: registering metric: " + err.Error()) // a programming error: clashing names
	}
	return c
}
