package loadgen

import (
	"fmt"

	"github.com/HdrHistogram/hdrhistogram-go"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Latency is a latency distribution in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Figure is one measured load, the service's or a ceiling's.
type Figure struct {
	Name       string           `json:"name"`
	Sync       string           `json:"sync"` // "always", "interval", "unknown" for a --url target, "" where storage plays no part
	Clients    int              `json:"clients"`
	ElapsedSec float64          `json:"elapsed_sec"`
	OK         int64            `json:"ok"`
	Rejected   int64            `json:"rejected"`
	Failed     int64            `json:"failed"`
	OpsPerSec  float64          `json:"ops_per_sec"` // successful (2xx) operations per second
	LatencyMS  Latency          `json:"latency_ms"`  // over every operation of the window
	ByOp       map[string]int64 `json:"by_op"`
	Errors     map[string]int64 `json:"errors"`
	Rejections map[string]int64 `json:"rejections"`
	// CPUCores is the average cores the bench process (load generator and
	// embedded service together) used in the window; OtherCores what other
	// processes used. Absent where /proc cannot be read.
	CPUCores   *float64 `json:"cpu_cores,omitempty"`
	OtherCores *float64 `json:"other_cores,omitempty"`
	// StealCores is the part of OtherCores the hypervisor gave to other
	// virtual machines (steal time): a busy host, not a busy machine.
	StealCores *float64 `json:"steal_cores,omitempty"`
	// OpsPerCPUSec is OpsPerSec per core the bench process used: steadier
	// than OpsPerSec when other processes take a varying share of the
	// machine, though it charges the load generator's own CPU too.
	OpsPerCPUSec *float64 `json:"ops_per_cpu_sec,omitempty"`
	// PerOp is the figure of each operation kind, when a load mixes kinds.
	PerOp map[string]OpFigure `json:"per_op,omitempty"`
	// GC is the garbage collection of the bench process in the window.
	GC *GC `json:"gc,omitempty"`
}

// GC is what garbage collection cost the bench process (load generator and
// embedded service) in a window: where a tail comes from on a busy heap
// (each cycle's marking takes a quarter of the cores, and allocating
// goroutines help it).
type GC struct {
	Cycles uint64  `json:"cycles"`
	CPUSec float64 `json:"cpu_sec"` // the runtime's estimate
	// Share is CPUSec over the process's CPU in the window; absent where
	// that CPU is not known.
	Share *float64 `json:"share_of_process_cpu,omitempty"`
}

// String is the figure as part of a report line.
func (g GC) String() string {
	s := fmt.Sprintf("gc %d cycles, %.2f CPU-s", g.Cycles, g.CPUSec)
	if g.Share != nil {
		s += fmt.Sprintf(" (%.0f%% of the process's CPU)", *g.Share*100)
	}
	return s
}

// OpFigure is one operation kind's share of a mixed load.
type OpFigure struct {
	OK        int64   `json:"ok"`
	OpsPerSec float64 `json:"ops_per_sec"`
	LatencyMS Latency `json:"latency_ms"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	return Latency{P50: ms(50), P90: ms(90), P99: ms(99), P999: ms(99.9), Max: float64(h.Max()) / 1000, Mean: h.Mean() / 1000}
}

// FigureOf summarizes a run.
func FigureOf(r Result, sync string) Figure {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	f := Figure{
		Name: r.Name, Sync: sync, Clients: r.Clients, ElapsedSec: r.Elapsed.Seconds(),
		OK: r.OK, Rejected: r.Rejected, Failed: r.Failed, OpsPerSec: r.OKPerSec(),
		ByOp: r.ByOp, Errors: r.Errors, Rejections: r.Rejections,
	}
	if r.CPUKnown {
		f.CPUCores, f.OtherCores, f.StealCores = &r.CPU, &r.OtherCPU, &r.StealCPU
		if r.CPU > 0 {
			perCPU := f.OpsPerSec / r.CPU
			f.OpsPerCPUSec = &perCPU
		}
	}
	if r.GCCycles > 0 {
		f.GC = &GC{Cycles: r.GCCycles, CPUSec: r.GCCPUSec}
		if r.CPUKnown && r.CPU > 0 && r.Elapsed > 0 {
			share := min(r.GCCPUSec/(r.CPU*r.Elapsed.Seconds()), 1)
			f.GC.Share = &share
		}
	}
	if r.Hist != nil && r.Hist.TotalCount() > 0 {
		f.LatencyMS = Latency{P50: ms(r.Percentile(50)), P90: ms(r.Percentile(90)), P99: ms(r.Percentile(99)),
			P999: ms(r.Percentile(99.9)), Max: ms(time.Duration(r.Hist.Max()) * time.Microsecond),
			Mean: r.Hist.Mean() / 1000}
	}
	if len(r.OpHist) > 1 {
		f.PerOp = make(map[string]OpFigure, len(r.OpHist))
		for op, h := range r.OpHist {
			of := OpFigure{OK: r.OpOK[op], LatencyMS: latencyOf(h)}
			if r.Elapsed > 0 {
				of.OpsPerSec = float64(of.OK) / r.Elapsed.Seconds()
			}
			f.PerOp[op] = of
		}
	}
	return f
}

// ScenarioReport is one scenario's figure, its correctness check and its
// throughput as a ratio to each ceiling measured in the same run.
type ScenarioReport struct {
	Figure
	Pools       int                `json:"pools"`
	Skipped     bool               `json:"skipped,omitempty"`
	Notes       []string           `json:"notes,omitempty"`
	Correctness *Correctness       `json:"correctness,omitempty"`
	Ratios      map[string]float64 `json:"ratios"` // ceiling name -> ops_per_sec / ceiling's ops_per_sec
	// CPURatios compares ops_per_cpu_sec the same way: the steadier figure
	// when other processes share the machine.
	CPURatios map[string]float64 `json:"cpu_ratios,omitempty"`
	// Appends is what the service's /metrics say its event store appends
	// did in the window: group commit at work.
	Appends *Appends `json:"appends,omitempty"`
	// OpenLoop is latency at fixed offered rates below the closed-loop
	// maximum (Figure), measured from intended send times: the figures an
	// SLO is written against.
	OpenLoop []OpenFigure `json:"open_loop,omitempty"`
}

// PeerPostgres names the PostgreSQL peer in reports and ratios.
const PeerPostgres = "postgres"

// PeerReport is another service with the same hold route, driven with one
// scenario's load by the same client and concurrency in the same run, so
// that scenario's figure can be read as a ratio to it.
type PeerReport struct {
	Figure
	Peer     string `json:"peer"`     // PeerPostgres
	Scenario string `json:"scenario"` // the load it got: HotPool or ManyPools
	Pools    int    `json:"pools"`
	// Durable says whether the peer's commits reach the disk before it
	// answers (for PostgreSQL: fsync on and synchronous_commit not off).
	Durable     bool         `json:"durable"`
	Notes       []string     `json:"notes,omitempty"`
	Correctness *Correctness `json:"correctness,omitempty"`
}

// Report is everything one bench run measured.
type Report struct {
	StartedAt   time.Time `json:"started_at"`
	GoVersion   string    `json:"go_version"`
	GOMAXPROCS  int       `json:"gomaxprocs"`
	NumCPU      int       `json:"num_cpu"`
	LoadAvg     []float64 `json:"load_avg,omitempty"` // 1, 5, 15 minutes, at the start
	LoadAvgEnd  []float64 `json:"load_avg_end,omitempty"`
	Target      string    `json:"target"` // "embedded" or the --url given
	Clients     int       `json:"clients"`
	DurationSec float64   `json:"duration_sec"`
	WarmupSec   float64   `json:"warmup_sec"`
	Notes       []string  `json:"notes,omitempty"`
	Ceilings    []Figure  `json:"ceilings"`
	// Peers are other services measured with the scenarios' loads
	// (`--postgres`); absent without one.
	Peers     []PeerReport     `json:"peers,omitempty"`
	Scenarios []ScenarioReport `json:"scenarios"`
}

// Peer returns the peer named name that got scenario's load.
func (r *Report) Peer(name, scenario string) (PeerReport, bool) {
	for _, p := range r.Peers {
		if p.Peer == name && p.Scenario == scenario {
			return p, true
		}
	}
	return PeerReport{}, false
}

// Ceiling returns the ceiling named name measured with sync mode sync.
func (r *Report) Ceiling(name, sync string) (Figure, bool) {
	for _, c := range r.Ceilings {
		if c.Name == name && (c.Sync == sync || name == CeilingHTTP) {
			return c, true
		}
	}
	return Figure{}, false
}

// WriteTable writes the report as a table for people.
func WriteTable(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "capacityd bench: %d clients, %s measured after %s warmup, target %s\n", r.Clients,
		secs(r.DurationSec), secs(r.WarmupSec), r.Target)
	fmt.Fprintf(&b, "machine: %d CPUs, GOMAXPROCS %d, %s, load average %s at start, %s at end\n\n", r.NumCPU, r.GOMAXPROCS,
		r.GoVersion, loads(r.LoadAvg), loads(r.LoadAvgEnd))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	// The peer's column is there only when a peer ran: without one the
	// table is what it always was.
	peerHeader, peerCell := "", func(ScenarioReport) string { return "" }
	if len(r.Peers) > 0 {
		peerHeader = "vs postgres\t"
		peerCell = func(s ScenarioReport) string { return ratio(s.Ratios, PeerPostgres) + "\t" }
	}
	fmt.Fprintln(tw, "scenario\tsync\tok/s\tp50\tp90\tp99\tp99.9\terrors\trejected\tcorrect\tvs http\tvs js-sync\tvs js-async\tcores us/others\tok/cpu-s\tvs http per cpu\t"+peerHeader)
	for _, s := range r.Scenarios {
		if s.Skipped {
			fmt.Fprintf(tw, "%s\t%s\tskipped\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", s.Name, s.Sync)
			continue
		}
		correct := "-"
		if s.Correctness != nil {
			correct = "ok"
			if !s.Correctness.Passed {
				correct = "FAILED"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Sync, rate(s.OpsPerSec),
			msStr(s.LatencyMS.P50), msStr(s.LatencyMS.P90), msStr(s.LatencyMS.P99), msStr(s.LatencyMS.P999),
			s.Failed, s.Rejected, correct, ratio(s.Ratios, CeilingHTTP), ratio(s.Ratios, CeilingStorageSync),
			ratio(s.Ratios, CeilingStorageAsync), cores(s.Figure), perCPU(s.Figure), ratio(s.CPURatios, CeilingHTTP), peerCell(s))
	}
	if len(r.Ceilings) > 0 {
		fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t")
		fmt.Fprintln(tw, "ceiling\tsync\tok/s\tp50\tp90\tp99\tp99.9\terrors\t\t\t\t\t\tcores us/others\tok/cpu-s\t\t")
		for _, c := range r.Ceilings {
			sync := c.Sync
			if sync == "" {
				sync = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\t\t\t\t\t%s\t%s\t\t\n", c.Name, sync, rate(c.OpsPerSec),
				msStr(c.LatencyMS.P50), msStr(c.LatencyMS.P90), msStr(c.LatencyMS.P99), msStr(c.LatencyMS.P999), c.Failed, cores(c), perCPU(c))
		}
	}
	if len(r.Peers) > 0 {
		fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t")
		fmt.Fprintln(tw, "peer (load)\tsync\tok/s\tp50\tp90\tp99\tp99.9\terrors\trejected\tcorrect\t\t\t\tcores us/others\tok/cpu-s\t\t")
		for _, p := range r.Peers {
			correct := "-"
			if p.Correctness != nil {
				correct = "ok"
				if !p.Correctness.Passed {
					correct = "FAILED"
				}
			}
			fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t\t\t\t%s\t%s\t\t\n", p.Peer, p.Scenario, p.Sync, rate(p.OpsPerSec),
				msStr(p.LatencyMS.P50), msStr(p.LatencyMS.P90), msStr(p.LatencyMS.P99), msStr(p.LatencyMS.P999), p.Failed, p.Rejected, correct, cores(p.Figure), perCPU(p.Figure))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	for _, s := range r.Scenarios {
		lines := s.Notes
		if len(s.ByOp) > 1 {
			lines = append(lines, "operations: "+counts(s.ByOp))
		}
		for _, op := range slices.Sorted(maps.Keys(s.PerOp)) {
			of := s.PerOp[op]
			lines = append(lines, fmt.Sprintf("%s: %s ok/s, p50 %s, p99 %s, p99.9 %s", op, rate(of.OpsPerSec),
				msStr(of.LatencyMS.P50), msStr(of.LatencyMS.P99), msStr(of.LatencyMS.P999)))
		}
		if len(s.Errors) > 0 {
			lines = append(lines, "errors: "+counts(s.Errors))
		}
		if len(s.Rejections) > 0 {
			lines = append(lines, "rejections: "+counts(s.Rejections))
		}
		if a := s.Appends; a != nil {
			lines = append(lines, fmt.Sprintf("store: %d appends (%s/s), %.1f commands and %.1f events per append, %.2fms per append",
				a.Appends, rate(a.PerSec), a.CommandsPerAppend, a.EventsPerAppend, a.MeanAppendMS))
		}
		if s.GC != nil {
			lines = append(lines, "closed loop: "+s.GC.String())
		}
		for _, o := range s.OpenLoop {
			lines = append(lines, o.String())
		}
		if c := s.Correctness; c != nil {
			lines = append(lines, fmt.Sprintf("check: %d pools, held %d (want %d), confirmed %d (want %d), released %d, unanswered %d, over capacity %d",
				c.Pools, c.Held, c.ExpectedHeld, c.Confirmed, c.ExpectedConfirmed, c.Released, c.Unknown, c.OverCapacity))
			lines = append(lines, c.Problems...)
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n", s.Name)
		for _, l := range lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	for _, p := range r.Peers {
		lines := p.Notes
		if len(p.Errors) > 0 {
			lines = append(lines, "errors: "+counts(p.Errors))
		}
		if c := p.Correctness; c != nil {
			lines = append(lines, fmt.Sprintf("check: %d pools, held %d (want %d), unanswered %d, over capacity %d",
				c.Pools, c.Held, c.ExpectedHeld, c.Unknown, c.OverCapacity))
			lines = append(lines, c.Problems...)
		}
		fmt.Fprintf(&b, "\npeer %s (%s):\n", p.Peer, p.Scenario)
		for _, l := range lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	for _, c := range r.Ceilings {
		if len(c.Errors) > 0 {
			fmt.Fprintf(&b, "\nceiling %s (%s) errors: %s\n", c.Name, c.Sync, counts(c.Errors))
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func secs(s float64) string { return (time.Duration(s * float64(time.Second))).String() }

func loads(l []float64) string {
	if len(l) < 3 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2])
}

func rate(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func msStr(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	}
	return fmt.Sprintf("%.1fms", ms)
}

// cores shows the cores the bench and the rest of the machine used.
func cores(f Figure) string {
	if f.CPUCores == nil || f.OtherCores == nil {
		return "-"
	}
	s := fmt.Sprintf("%.1f/%.1f", *f.CPUCores, *f.OtherCores)
	if f.StealCores != nil && *f.StealCores >= 0.05 {
		s += fmt.Sprintf(" (%.1f steal)", *f.StealCores)
	}
	return s
}

// perCPU shows ok/s per core the bench process used.
func perCPU(f Figure) string {
	if f.OpsPerCPUSec == nil {
		return "-"
	}
	return rate(*f.OpsPerCPUSec)
}

func ratio(r map[string]float64, name string) string {
	v, ok := r[name]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// counts lists a count map as "kind n, kind n" in a stable order.
func counts(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
