package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// errDiffers is verify's failure: some copy is not a prefix of the head.
var errDiffers = errors.New("verify: a copy is not a prefix of the head")

// errReadModels is verify's other failure: a read model's figures differ
// from a fresh fold of the stream it reads.
var errReadModels = errors.New("verify: a read model differs from a fresh fold of the stream")

// verifyCommand runs `capacityd verify --nats-url URL --region a
// [--domains a,b] [--watch 5s]`: every copy of region a's stream it can
// reach (one per JetStream domain) is compared message by message with the
// head (the copy in the domain of the writer of the highest term): missing,
// out of order, content mismatch, diverged tail, lag. The read models of
// every region reached (its capacityd, over natsapi's figures operation)
// are compared with a fresh fold of the copy they read, each pool at the
// sequence they reflect. Exit 0 when every copy is a prefix of the head
// and every read model equals the fold. Each run's verdict is published
// (kv.VerifyBucket) unless --publish=false.
func verifyCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("capacityd verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("nats-url", getenv("CAPACITY_NATS_URL"), "NATS server to connect to ($CAPACITY_NATS_URL)")
	region := fs.String("region", "", "the region whose stream to verify")
	var domains []string
	fs.Func("domains", "comma-separated JetStream domains holding copies (default: the region and every domain named in its terms)", func(v string) error {
		domains = splitList(v)
		return nil
	})
	watch := fs.Duration("watch", 0, "verify again at this interval until interrupted (0: once)")
	publish := fs.Bool("publish", true, "store each run's verdict in bucket "+kv.VerifyBucket+" of every domain reached, for GET /v1/regions and the planner board")
	listen := fs.String("metrics-listen", "", "with --watch, serve the last results as Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464)")
	if err := fs.Parse(args); err != nil {
		return helpOr(errUsage{err})
	}
	if *url == "" || *region == "" || fs.NArg() > 0 {
		return errUsage{fmt.Errorf("usage: capacityd verify --nats-url URL --region REGION [--domains a,b] [--watch 5s [--metrics-listen ADDR]] [--publish=false]")}
	}
	nc, err := nats.Connect(*url, nats.Name("capacityd-verify"))
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer nc.Close()
	var metrics *verifyMetrics
	if *listen != "" {
		if *watch <= 0 {
			return errUsage{fmt.Errorf("--metrics-listen needs --watch")}
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", *listen, err)
		}
		metrics = newVerifyMetrics(*region)
		srv := &http.Server{Handler: promhttp.HandlerFor(metrics.reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(ln) }()
		defer func() { _ = srv.Close(); <-done }()
		fmt.Fprintf(stdout, "verify: metrics on http://%s/metrics\n", ln.Addr())
	}
	for {
		err := verifyOnce(ctx, nc, *region, domains, *publish, stdout, metrics)
		if *watch <= 0 {
			return err
		}
		if err != nil && !errors.Is(err, errDiffers) && !errors.Is(err, errReadModels) {
			fmt.Fprintln(stdout, "verify:", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*watch):
		}
	}
}

func verifyOnce(ctx context.Context, nc *nats.Conn, region string, domains []string, publish bool, out io.Writer, metrics *verifyMetrics) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if len(domains) == 0 {
		domains = []string{region}
	}
	// The head: the writer of the highest term any domain holds.
	head := kv.Term{Region: region, Writer: region}
	for _, d := range domains {
		if t, err := kv.PeerTerm(ctx, nc, d, region); err == nil && t.Epoch > head.Epoch {
			head = t
		}
	}
	if !contains(domains, head.Writer) {
		domains = append(domains, head.Writer)
	}
	res := verifyResult{Region: region, Head: head.Writer, Epoch: head.Epoch}
	// Every region's read models are asked first, then the head is read
	// once for all of them: a pool a read model reflects past its own
	// copy (a fresh mirror catching up) is compared with the head's fold.
	checks := make(map[string]*readModelCheck, len(domains))
	for _, d := range domains {
		checks[d] = checkReadModels(ctx, nc, d, region, d == head.Writer)
	}
	headCheck := checks[head.Writer]
	headCopy, err := streams.ReadCopyEach(ctx, nc, head.Writer, region, func(rec streams.Recorded, err error) {
		for _, c := range checks {
			c.visitHead(rec, err)
		}
	})
	if err != nil {
		metrics.failed()
		err = fmt.Errorf("verify: head of region %s in domain %s: %w", region, head.Writer, err)
		if publish {
			res.problem(err.Error())
			v := res.verdict(time.Now().UTC())
			v.OK = false
			publishVerdict(ctx, nc, domains, v, out)
		}
		return err
	}
	res.HeadLastSeq = headCopy.LastSeq
	fmt.Fprintf(out, "region %s: head in domain %s (epoch %d), last_seq %d, %d messages\n", region, head.Writer, head.Epoch, headCopy.LastSeq, len(headCopy.Order()))
	headCheck.report(out, &res, metrics)
	for _, d := range domains {
		if d == head.Writer {
			continue
		}
		check := checks[d]
		c, err := streams.ReadCopyEach(ctx, nc, d, region, check.visit)
		if err != nil {
			fmt.Fprintf(out, "  domain %s: unreachable or no copy: %v\n", d, err)
			check.report(out, &res, metrics) // every pool compared with the head
			continue
		}
		diff := streams.Compare(headCopy, c)
		if len(diff.Beyond) > 0 {
			// The head as read may be older than this copy: under load the
			// head moves on while the copies are read. Read it again before
			// calling the copy's tail diverged.
			if again, err := streams.ReadCopy(ctx, nc, head.Writer, region); err == nil {
				headCopy, res.HeadLastSeq = again, again.LastSeq
				diff = streams.Compare(headCopy, c)
				fmt.Fprintf(out, "  (head read again for domain %s: last_seq %d)\n", d, headCopy.LastSeq)
			}
		}
		metrics.copy(d, diff)
		res.Copies++
		verdict := "prefix of the head"
		if !diff.Prefix() {
			verdict = "DIFFERS"
			res.problem(fmt.Sprintf("copy in %s differs: missing %d, out of order %d, content mismatch %d, diverged tail %d%s",
				d, len(diff.Missing), diff.OutOfOrder, len(diff.Mismatch), len(diff.Beyond), seqRange(diff.Beyond)))
			res.copyDiffers = true
		}
		fmt.Fprintf(out, "  domain %s: %s; last_seq %d, lag %d, missing %d, out of order %d, content mismatch %d, diverged tail %d%s\n",
			d, verdict, c.LastSeq, diff.Lag, len(diff.Missing), diff.OutOfOrder, len(diff.Mismatch), len(diff.Beyond), seqRange(diff.Beyond))
		check.report(out, &res, metrics)
	}
	// Copies set aside by failback are history, not copies: reported, never
	// a reason to fail (their diverged tail is what the fenced region wrote
	// after the recovery point).
	for _, d := range domains {
		js, err := jetstream.NewWithDomain(nc, d)
		if err != nil {
			continue
		}
		names, err := streams.Asides(ctx, js, region)
		if err != nil {
			continue
		}
		for _, name := range names {
			c, err := streams.ReadStream(ctx, nc, d, name)
			if err != nil {
				fmt.Fprintf(out, "  domain %s: set aside %s: %v\n", d, name, err)
				continue
			}
			diff := streams.Compare(headCopy, c)
			fmt.Fprintf(out, "  domain %s: set aside %s (kept, not a copy): last_seq %d, content mismatch %d, diverged tail %d%s\n",
				d, name, c.LastSeq, len(diff.Mismatch), len(diff.Beyond), seqRange(diff.Beyond))
		}
	}
	metrics.verdict(head, headCopy.LastSeq, res.ok())
	if publish {
		publishVerdict(ctx, nc, domains, res.verdict(time.Now().UTC()), out)
	}
	switch {
	case res.copyDiffers:
		return errDiffers
	case res.modelsDiffer:
		return errReadModels
	}
	return nil
}

func seqRange(seqs []uint64) string {
	if len(seqs) == 0 {
		return ""
	}
	return fmt.Sprintf(" (sequences %d..%d)", seqs[0], seqs[len(seqs)-1])
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// verifyMetrics are verify --watch's last results as Prometheus gauges
// (--metrics-listen). A nil *verifyMetrics records nothing.
type verifyMetrics struct {
	reg                                   *prometheus.Registry
	ok, runs, failures, lastRun, headSeq  prometheus.Gauge
	epoch                                 prometheus.Gauge
	lag, missing, mismatch, beyond, order *prometheus.GaugeVec
	prefix                                *prometheus.GaugeVec
	readModelMismatch                     *prometheus.GaugeVec
}

func newVerifyMetrics(region string) *verifyMetrics {
	labels := prometheus.Labels{"region": region}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	vec := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, []string{"domain"})
	}
	m := &verifyMetrics{
		reg:      prometheus.NewRegistry(),
		ok:       gauge("capacity_verify_ok", "1 if every reachable copy was a prefix of the head and every read model checked equal to a fresh fold at the last run, else 0."),
		runs:     gauge("capacity_verify_runs", "Runs completed (the head read)."),
		failures: gauge("capacity_verify_failures", "Runs that could not read the head."),
		lastRun:  gauge("capacity_verify_last_run_timestamp_seconds", "When the last run completed."),
		headSeq:  gauge("capacity_verify_head_last_seq", "Last sequence of the head at the last run."),
		epoch:    gauge("capacity_verify_head_epoch", "Epoch of the head's term at the last run."),
		lag:      vec("capacity_verify_copy_lag", "Head's last sequence minus the copy's."),
		missing:  vec("capacity_verify_copy_missing", "Messages the head has up to the copy's last sequence and the copy lacks."),
		mismatch: vec("capacity_verify_copy_mismatch", "Same sequence, different content."),
		beyond:   vec("capacity_verify_copy_diverged_tail", "Messages of the copy past the head's last sequence."),
		order:    vec("capacity_verify_copy_out_of_order", "Messages read out of sequence order."),
		prefix:   vec("capacity_verify_copy_prefix", "1 if the copy is a prefix of the head."),
		readModelMismatch: vec("capacity_verify_readmodel_mismatch",
			"Differences between the domain's region's read models and a fresh fold of its copy (figures per pool of the verified region)."),
	}
	m.reg.MustRegister(m.ok, m.runs, m.failures, m.lastRun, m.headSeq, m.epoch, m.lag, m.missing, m.mismatch, m.beyond, m.order, m.prefix, m.readModelMismatch)
	return m
}

func (m *verifyMetrics) copy(domain string, d streams.Difference) {
	if m == nil {
		return
	}
	m.lag.WithLabelValues(domain).Set(float64(d.Lag))
	m.missing.WithLabelValues(domain).Set(float64(len(d.Missing)))
	m.mismatch.WithLabelValues(domain).Set(float64(len(d.Mismatch)))
	m.beyond.WithLabelValues(domain).Set(float64(len(d.Beyond)))
	m.order.WithLabelValues(domain).Set(float64(d.OutOfOrder))
	prefix := 0.0
	if d.Prefix() {
		prefix = 1
	}
	m.prefix.WithLabelValues(domain).Set(prefix)
}

func (m *verifyMetrics) readModels(domain string, mismatches int) {
	if m == nil {
		return
	}
	m.readModelMismatch.WithLabelValues(domain).Set(float64(mismatches))
}

func (m *verifyMetrics) verdict(head kv.Term, headSeq uint64, ok bool) {
	if m == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	m.ok.Set(v)
	m.runs.Inc()
	m.headSeq.Set(float64(headSeq))
	m.epoch.Set(float64(head.Epoch))
	m.lastRun.SetToCurrentTime()
}

func (m *verifyMetrics) failed() {
	if m == nil {
		return
	}
	m.failures.Inc()
	m.ok.Set(0)
}
