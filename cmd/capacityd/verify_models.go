package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/nats-io/nats.go"
)

// maxMismatchesShown bounds the mismatches verify prints per read model.
const maxMismatchesShown = 20

// readModelCheck is verify's check of one region's read models: their
// figures of the verified region's pools (natsapi OpFigures), then a fresh
// fold of the copy of the stream they read, in the same domain, each pool
// up to the sequence the read model reports for it (views.Refold), and a
// fold of the head for the pools the read model reflects past its copy.
type readModelCheck struct {
	domain, region string
	isHead         bool // the domain holds the head: its copy is the head
	at             time.Time
	position       uint64 // lowest position of the region's stream the pages reported
	skip           string // why the read models were not checked ("" if they were)
	local          *views.Refold
	head           *views.Refold // nil when isHead
	pools          int           // pools the read model reported
	undecodable    int           // messages of the copy that did not decode (skipped, as the models do)
}

// checkReadModels asks the capacityd of domain (the region of that name)
// for its read models' figures of region's pools, every page, before the
// streams are read: a read model never reflects a message its copy lacked
// when the copy is read after. A region without a running capacityd is
// reported, not a failure.
func checkReadModels(ctx context.Context, nc *nats.Conn, domain, region string, isHead bool) *readModelCheck {
	c := &readModelCheck{domain: domain, region: region, isHead: isHead, at: time.Now().UTC(), position: math.MaxUint64}
	client := natsapi.NewClient(nc, domain)
	var figures []views.PoolFigures
	for after := ""; ; {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rep, err := client.Figures(rctx, natsapi.FiguresRequest{Home: region, After: after, Limit: views.MaxLimit, At: c.at})
		cancel()
		var refusal *natsapi.Error
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			c.skip = "no capacityd of region " + domain + " answers " + natsapi.Subject(domain, natsapi.OpFigures)
			return c
		case errors.As(err, &refusal):
			c.skip = fmt.Sprintf("capacityd of region %s refused: %d %s: %s", domain, refusal.Status, refusal.Code, refusal.Detail)
			return c
		case err != nil:
			c.skip = fmt.Sprintf("capacityd of region %s: %v", domain, err)
			return c
		}
		c.position = min(c.position, rep.Positions[region])
		for _, p := range rep.Pools {
			figures = append(figures, p.Views())
		}
		if rep.Next == "" {
			break
		}
		after = rep.Next
	}
	c.pools = len(figures)
	c.local = views.NewRefold(figures, c.position)
	if !isHead {
		c.head = views.NewRefold(figures, c.position)
	}
	return c
}

// visit folds one message of the domain's own copy (streams.ReadCopyEach).
func (c *readModelCheck) visit(rec streams.Recorded, err error) {
	if c.local == nil {
		return
	}
	fold(c.local, rec, err, &c.undecodable)
}

// visitHead folds one message of the head.
func (c *readModelCheck) visitHead(rec streams.Recorded, err error) {
	switch {
	case c.local == nil:
	case c.isHead:
		fold(c.local, rec, err, &c.undecodable)
	default:
		fold(c.head, rec, err, nil)
	}
}

func fold(r *views.Refold, rec streams.Recorded, err error, undecodable *int) {
	var events []capacity.Event
	if err == nil {
		events, err = rec.Events()
	}
	if err != nil {
		if undecodable != nil {
			*undecodable++
		}
		return
	}
	r.Apply(rec.Pool, rec.Seq, events...)
}

// report prints the check's outcome and records it in res and metrics.
func (c *readModelCheck) report(out io.Writer, res *verifyResult, metrics *verifyMetrics) {
	if c.skip != "" {
		fmt.Fprintf(out, "  domain %s: read models not checked: %s\n", c.domain, c.skip)
		return
	}
	res.ReadModels++
	mismatches, viaHead := c.local.Check(c.at, c.head)
	metrics.readModels(c.domain, len(mismatches))
	extra := ""
	if viaHead > 0 {
		extra += fmt.Sprintf(", %d pools reflected past this copy compared with the head", viaHead)
	}
	if c.undecodable > 0 {
		extra += fmt.Sprintf(", %d undecodable messages skipped", c.undecodable)
	}
	if len(mismatches) == 0 {
		fmt.Fprintf(out, "  domain %s: read models equal a fresh fold: %d pools of region %s (position %d%s)\n",
			c.domain, c.pools, c.region, c.position, extra)
		return
	}
	res.modelsDiffer = true
	pools := map[string]bool{}
	for _, m := range mismatches {
		pools[m.Pool] = true
	}
	fmt.Fprintf(out, "  domain %s: read models DIFFER from a fresh fold: %d mismatches in %d of %d pools of region %s (position %d%s)\n",
		c.domain, len(mismatches), len(pools), c.pools, c.region, c.position, extra)
	for i, m := range mismatches {
		if i == maxMismatchesShown {
			fmt.Fprintf(out, "    ... and %d more\n", len(mismatches)-i)
			break
		}
		fmt.Fprintf(out, "    %s\n", m)
	}
	res.problem(fmt.Sprintf("read models of %s differ: %s", c.domain, mismatches[0]))
}

// verifyResult is one verify run's outcome, as printed, exported and
// published (the planner board shows the last).
type verifyResult struct {
	Region       string
	Head         string
	Epoch        uint64
	HeadLastSeq  uint64
	Copies       int // copies compared with the head (the head not counted)
	ReadModels   int // regions whose read models were checked
	Problems     []string
	copyDiffers  bool
	modelsDiffer bool
}

func (r *verifyResult) problem(s string) { r.Problems = append(r.Problems, s) }

func (r *verifyResult) ok() bool { return !r.copyDiffers && !r.modelsDiffer }

// summary is the result in one line.
func (r *verifyResult) summary() string {
	if len(r.Problems) > 0 {
		return strings.Join(r.Problems, "; ")
	}
	return fmt.Sprintf("%d copies a prefix of the head (%s, last_seq %d), %d read models equal a fresh fold", r.Copies, r.Head, r.HeadLastSeq, r.ReadModels)
}

// verdict is the result as published.
func (r *verifyResult) verdict(at time.Time) capacity.VerifyVerdict {
	return capacity.VerifyVerdict{Region: r.Region, At: at, OK: r.ok(), Head: r.Head, Epoch: r.Epoch, HeadLastSeq: r.HeadLastSeq,
		Copies: r.Copies, ReadModels: r.ReadModels, Summary: r.summary()}
}

// publishVerdict stores v as the last verdict on its region in every
// domain given that answers (kv.VerifyBucket), for each region's
// capacityd to show; a domain that does not answer is noted, not retried.
func publishVerdict(ctx context.Context, nc *nats.Conn, domains []string, v capacity.VerifyVerdict, out io.Writer) {
	var done, failed []string
	for _, d := range domains {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := kv.PutVerdict(pctx, nc, d, v)
		cancel()
		if err != nil {
			failed = append(failed, d)
			continue
		}
		done = append(done, d)
	}
	state := "ok"
	if !v.OK {
		state = "FAILED"
	}
	line := fmt.Sprintf("verdict: %s, published in %s", state, strings.Join(done, ", "))
	if len(done) == 0 {
		line = fmt.Sprintf("verdict: %s, published nowhere", state)
	}
	if len(failed) > 0 {
		line += fmt.Sprintf(" (not in %s: unreachable)", strings.Join(failed, ", "))
	}
	fmt.Fprintln(out, line)
}
