package pools

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the write side's Prometheus metrics: the size and latency of
// every append (fed by Options.OnAppend) and a Service's running totals
// (Stats, Loaded), read at scrape time. cmd/capacityd creates them once per
// registry, passes OnAppend to Options and calls Watch on the service.
type Metrics struct {
	reg           prometheus.Registerer
	appendBatch   prometheus.Histogram
	appendEvents  prometheus.Histogram
	appendLatency prometheus.Histogram
}

// NewMetrics registers the append histograms on reg. It panics if they are
// already registered there, like prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		appendBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "capacity_append_batch_commands",
			Help:    "Commands carried by one append to the event store (group commit size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		appendEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "capacity_append_batch_events",
			Help:    "Events carried by one append to the event store.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "capacity_append_duration_seconds",
			Help:    "Time one append to the event store took, until acknowledged.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}),
	}
	reg.MustRegister(m.appendBatch, m.appendEvents, m.appendLatency)
	return m
}

// OnAppend records one append; pass it as Options.OnAppend.
func (m *Metrics) OnAppend(commands, events int, took time.Duration) {
	m.appendBatch.Observe(float64(commands))
	m.appendEvents.Observe(float64(events))
	m.appendLatency.Observe(took.Seconds())
}

// Watch registers counters and a gauge that read s's running totals at
// scrape time. Call it once, for the one service of the registry.
func (m *Metrics) Watch(s *Service) {
	counter := func(name, help string, read func(Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(read(s.Stats())) })
	}
	m.reg.MustRegister(
		counter("capacity_holds_accepted_total", "Holds accepted.", func(st Stats) uint64 { return st.HoldsAccepted }),
		counter("capacity_holds_rejected_total", "Holds refused for capacity, a closed pool or a conflict.", func(st Stats) uint64 { return st.HoldsRejected }),
		counter("capacity_appends_total", "Successful appends to the event store.", func(st Stats) uint64 { return st.Appends }),
		counter("capacity_events_appended_total", "Events appended to the event store.", func(st Stats) uint64 { return st.Events }),
		counter("capacity_append_conflicts_total", "Appends refused because another writer wrote first.", func(st Stats) uint64 { return st.Conflicts }),
		counter("capacity_append_failures_total", "Appends that failed for other reasons (outcome unknown).", func(st Stats) uint64 { return st.AppendFailures }),
		counter("capacity_commands_total", "Commands answered by pool entities.", func(st Stats) uint64 { return st.Commands }),
		counter("capacity_pool_loads_total", "Pools loaded into memory (snapshot + tail, or full replay).", func(st Stats) uint64 { return st.Loads }),
		counter("capacity_pool_replays_total", "Pool loads that found no usable snapshot.", func(st Stats) uint64 { return st.Replays }),
		counter("capacity_snapshots_total", "Snapshots written.", func(st Stats) uint64 { return st.Snapshots }),
		counter("capacity_pool_batches_total", "Cross-pool atomic batches of more than one pool commit.", func(st Stats) uint64 { return st.Batches }),
		counter("capacity_pool_batched_commits_total", "Pool commits carried by cross-pool batches.", func(st Stats) uint64 { return st.BatchedCommits }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "capacity_pools_loaded", Help: "Pools in memory in this process."},
			func() float64 { return float64(s.Loaded()) }),
	)
}
