package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/streams"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamEvent is one decoded event of the stream, for resolution and for
// the report's stream dump.
type StreamEvent struct {
	Seq           uint64 `json:"seq"`
	Pool          string `json:"pool"`
	Type          string `json:"type"`
	ReservationID string `json:"reservation_id,omitempty"`
	Quantity      int    `json:"quantity,omitempty"`
	Capacity      int    `json:"capacity,omitempty"`
	Err           string `json:"err,omitempty"`
	// At is the time the deciding instance recorded on the event;
	// ExpiresAt a hold's deadline (Held only).
	At        time.Time `json:"at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// PoolTime is the pool's recorded time after this event: the latest
	// At of its events so far (set by GroundTruthOf).
	PoolTime time.Time `json:"-"`
}

// GroundTruth is what the event stream says happened.
type GroundTruth struct {
	Events    []StreamEvent
	Held      map[string]StreamEvent // by reservation id
	Confirmed map[string]StreamEvent
	Released  map[string]StreamEvent
	Expired   map[string]StreamEvent
	// Figures per pool after replaying the whole stream, and the most
	// units ever in use (held + confirmed) at any point of it.
	Final   map[string]Figures
	MaxUsed map[string]int
	// Errors are messages that did not decode and anomalies of the
	// history itself (a reservation held twice, a hold confirmed or
	// expired on the wrong side of its deadline in the pool's recorded
	// time).
	Errors []string
	// Lapses are the holds that lapsed, each with where its deadline falls
	// in the pool's history (for the lapse operations of the check).
	Lapses []Lapse
	// AllLapsedBy, when set, is a recorder time by which every hold's
	// deadline had passed on every instance (a scenario that moves the
	// clocks past them all says when).
	AllLapsedBy int64
	// ClockReaches, when set, is the earliest recorder time at which any
	// instance's clock could have read t (a scenario that sets the clocks
	// knows): no hold lapses earlier than ClockReaches(its deadline).
	ClockReaches func(t time.Time) int64
}

// Lapse is a hold that passed its deadline unconfirmed: held at HeldSeq,
// its Expired event at ExpiredSeq.
type Lapse struct {
	Pool, ReservationID string
	ExpiresAt           time.Time
	HeldSeq, ExpiredSeq uint64
}

// Figures are a pool's counters.
type Figures struct {
	Capacity, Held, Confirmed int
}

// ReadGroundTruth reads every event of the region's stream through a NATS
// client (urls comma-separated). replicas must be the stream's, since
// streams.New updates a stream whose configuration differs.
func ReadGroundTruth(ctx context.Context, urls, region string, replicas int) (*GroundTruth, error) {
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", urls, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	store, err := streams.New(ctx, js, region, streams.WithReplicas(replicas), streams.WithTimeout(20*time.Second))
	if err != nil {
		return nil, err
	}
	var events []StreamEvent
	for ev, err := range streams.NewPoolEvents(store).Log(ctx, 1) {
		se := StreamEvent{Seq: ev.Seq, Pool: ev.Pool}
		if err != nil {
			if ev.Seq == 0 {
				return nil, fmt.Errorf("reading the stream: %w", err)
			}
			se.Err = err.Error()
			events = append(events, se)
			continue
		}
		se.Type = ev.Event.EventType()
		switch e := ev.Event.(type) {
		case capacity.PoolDefined:
			se.Capacity, se.At = e.Capacity+e.Overbook, e.DefinedAt
		case capacity.CapacityChanged:
			se.Capacity, se.At = e.To, e.At
		case capacity.Held:
			se.ReservationID, se.Quantity, se.At, se.ExpiresAt = e.ReservationID, e.Quantity, e.At, e.ExpiresAt
		case capacity.Confirmed:
			se.ReservationID, se.At = e.ReservationID, e.At
		case capacity.Released:
			se.ReservationID, se.At = e.ReservationID, e.At
		case capacity.Expired:
			se.ReservationID, se.At = e.ReservationID, e.At
		}
		events = append(events, se)
	}
	return GroundTruthOf(events), nil
}

// GroundTruthOf folds decoded stream events (as ReadGroundTruth reads them,
// or from a report's stream.json).
//
// Time on a pool is its recorded time: the latest At of its events so far
// (decisions must never go back before it). A hold lapses when that time
// reaches its deadline, whether or not its Expired event is written yet,
// so the units in use at an event are the confirmed ones plus the holds
// whose deadline is still ahead. A confirm or release of a hold whose
// deadline the pool's time had already reached, and an Expired event
// before the deadline, are anomalies.
func GroundTruthOf(events []StreamEvent) *GroundTruth {
	gt := &GroundTruth{
		Events: events,
		Held:   map[string]StreamEvent{}, Confirmed: map[string]StreamEvent{}, Released: map[string]StreamEvent{},
		Expired: map[string]StreamEvent{},
		Final:   map[string]Figures{}, MaxUsed: map[string]int{},
	}
	type resvState struct {
		qty       int
		status    byte // 'h' held, 'c' confirmed, 'r' released, 'x' expired
		expiresAt time.Time
		heldSeq   uint64
	}
	res := map[string]map[string]*resvState{}
	poolTime := map[string]time.Time{}
	for i := range events {
		se := &events[i]
		if se.Err != "" {
			gt.Errors = append(gt.Errors, se.Err)
			continue
		}
		if res[se.Pool] == nil {
			res[se.Pool] = map[string]*resvState{}
		}
		f := gt.Final[se.Pool]
		pr := res[se.Pool]
		r := pr[se.ReservationID]
		before := poolTime[se.Pool]
		now := before
		if se.At.After(now) {
			now = se.At
		}
		poolTime[se.Pool], se.PoolTime = now, now
		lapsed := func(r *resvState) bool { return !r.expiresAt.IsZero() && !now.Before(r.expiresAt) }
		switch se.Type {
		case capacity.PoolDefinedType, capacity.CapacityChangedType:
			f.Capacity = se.Capacity
		case capacity.HeldType:
			if _, dup := gt.Held[se.ReservationID]; dup {
				gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: reservation %s held twice", se.Seq, se.ReservationID))
			}
			gt.Held[se.ReservationID] = *se
			pr[se.ReservationID] = &resvState{qty: se.Quantity, status: 'h', expiresAt: se.ExpiresAt, heldSeq: se.Seq}
			f.Held += se.Quantity
		case capacity.ConfirmedType:
			gt.Confirmed[se.ReservationID] = *se
			if r != nil && r.status == 'h' {
				if lapsed(r) {
					gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: confirmed %s at pool time %s (event at %s), at or past its deadline %s",
						se.Seq, se.ReservationID, now.Format(time.RFC3339Nano), se.At.Format(time.RFC3339Nano), r.expiresAt.Format(time.RFC3339Nano)))
				}
				r.status = 'c'
				f.Held -= r.qty
				f.Confirmed += r.qty
			} else {
				gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: confirmed %s which is not held", se.Seq, se.ReservationID))
			}
		case capacity.ReleasedType:
			gt.Released[se.ReservationID] = *se
			if r != nil {
				switch r.status {
				case 'h':
					if lapsed(r) {
						gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: released %s at pool time %s, at or past its deadline %s: it had lapsed",
							se.Seq, se.ReservationID, now.Format(time.RFC3339Nano), r.expiresAt.Format(time.RFC3339Nano)))
					}
					f.Held -= r.qty
				case 'c':
					f.Confirmed -= r.qty
				}
				r.status = 'r'
			}
		case capacity.ExpiredType:
			gt.Expired[se.ReservationID] = *se
			if r != nil && r.status == 'h' {
				if !lapsed(r) {
					gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: expired %s at pool time %s, before its deadline %s",
						se.Seq, se.ReservationID, now.Format(time.RFC3339Nano), r.expiresAt.Format(time.RFC3339Nano)))
				}
				f.Held -= r.qty
				r.status = 'x'
				gt.Lapses = append(gt.Lapses, Lapse{Pool: se.Pool, ReservationID: se.ReservationID, ExpiresAt: r.expiresAt, HeldSeq: r.heldSeq, ExpiredSeq: se.Seq})
			}
		}
		gt.Final[se.Pool] = f
		used := f.Held + f.Confirmed
		if used > f.Capacity {
			// Holds past their deadline no longer count.
			used = f.Confirmed
			for _, o := range pr {
				if o.status == 'h' && !lapsed(o) {
					used += o.qty
				}
			}
		}
		gt.MaxUsed[se.Pool] = max(gt.MaxUsed[se.Pool], used)
	}
	return gt
}

// Result is the verdict on one history, with the figures every fault
// scenario prints.
type Result struct {
	Attempted        int
	Acked            int
	RejectedCapacity int
	Rejected         int
	Unknown          int
	UnknownHappened  int // unknown writes the stream shows happened
	Lapses           int // holds that lapsed (in the lapse operations of the check)
	Overbooked       []string
	Lost             []Op // acknowledged writes absent from the stream
	Mismatch         []string
	Check            porcupine.CheckResult
	CheckTime        time.Duration
	// NotLinearizable names the pools whose history the check found
	// illegal, or could not decide in time, each with its verdict.
	NotLinearizable []string
	// Info is porcupine's account of the pools that failed (none when the
	// check passed): what history.html shows.
	Info porcupine.LinearizationInfo
	Ops  []porcupine.Operation
}

// Failed reports whether the history breaks a promise.
func (r *Result) Failed() bool {
	return r.Check != porcupine.Ok || len(r.Lost) > 0 || len(r.Overbooked) > 0 || len(r.Mismatch) > 0
}

// Figures is the one-line summary.
func (r *Result) Figures() string {
	lapses := ""
	if r.Lapses > 0 {
		lapses = fmt.Sprintf(" lapsed_holds=%d", r.Lapses)
	}
	return fmt.Sprintf("ops attempted=%d acknowledged=%d rejected_for_capacity=%d rejected_other=%d unknown=%d (happened=%d)%s overbooked_pools=%d lost_acks=%d linearizable=%s (checked in %v)",
		r.Attempted, r.Acked, r.RejectedCapacity, r.Rejected-r.RejectedCapacity, r.Unknown, r.UnknownHappened, lapses,
		len(r.Overbooked), len(r.Lost), yesNo(r.Check), r.CheckTime.Round(time.Millisecond))
}

func yesNo(c porcupine.CheckResult) string {
	switch c {
	case porcupine.Ok:
		return "yes"
	case porcupine.Illegal:
		return "NO"
	}
	return "unknown (checker timeout)"
}

// Check resolves the history's unknowns against the stream, checks it
// against the model and counts lost acknowledgements and overbooked pools.
// final are the pools as the service answered after the traffic.
func Check(history []Op, capacities map[string]int, gt *GroundTruth, final []PoolDoc, timeout time.Duration) *Result {
	r := &Result{}
	acked := map[Kind]map[string]bool{KindConfirm: {}, KindRelease: {}}
	for _, op := range history {
		if op.Outcome == OK && acked[op.Kind] != nil {
			acked[op.Kind][op.ReservationID] = true
		}
	}
	for _, op := range history {
		r.Attempted++
		switch op.Outcome {
		case OK:
			r.Acked++
		case Rejected:
			r.Rejected++
			if op.Problem == "insufficient-capacity" {
				r.RejectedCapacity++
			}
		case Unknown:
			r.Unknown++
		}
		var fact StreamEvent
		var inStream bool
		switch op.Kind {
		case KindHold:
			fact, inStream = gt.Held[op.ReservationID]
			inStream = inStream && fact.Pool == op.Pool && fact.Quantity == op.Quantity
		case KindConfirm:
			fact, inStream = gt.Confirmed[op.ReservationID]
		case KindRelease:
			fact, inStream = gt.Released[op.ReservationID]
			if !inStream && op.Outcome == OK && op.ResStatus == "expired" {
				// Releasing a lapsed hold changes nothing: its lapse is
				// what the stream must show.
				fact, inStream = gt.Expired[op.ReservationID]
			}
		}
		if op.Kind == KindHold && inStream {
			// The pool's time at the decision, and the deadline: the
			// model keeps the pool's time (see model.go).
			op.At, op.ExpiresAt = fact.At, fact.ExpiresAt
		}
		switch {
		case op.Outcome == OK && op.Kind != KindRead && !inStream:
			r.Lost = append(r.Lost, op)
		case op.Outcome == Unknown && op.Kind != KindRead && inStream:
			// It happened; when, the client cannot say: it may take effect
			// at any point after its call (porcupine's convention). A
			// confirm or release whose event an acknowledged one explains
			// is kept too (placed as a no-op) but not counted.
			if acked[op.Kind] == nil || !acked[op.Kind][op.ReservationID] {
				r.UnknownHappened++
			}
			op.Outcome, op.Return = OK, math.MaxInt64
		case op.Outcome == Unknown:
			continue // it did not happen (or was a read): drop it
		}
		r.Ops = append(r.Ops, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: op, Return: op.Return})
	}
	for _, p := range final {
		if p.Held+p.Confirmed > p.Capacity {
			r.Overbooked = append(r.Overbooked, fmt.Sprintf("%s: held %d + confirmed %d > capacity %d (service)", p.ID, p.Held, p.Confirmed, p.Capacity))
		}
		f := gt.Final[p.ID]
		if f.Held != p.Held || f.Confirmed != p.Confirmed || f.Capacity != p.Capacity {
			r.Mismatch = append(r.Mismatch, fmt.Sprintf("%s: service says held=%d confirmed=%d capacity=%d, stream replay says held=%d confirmed=%d capacity=%d",
				p.ID, p.Held, p.Confirmed, p.Capacity, f.Held, f.Confirmed, f.Capacity))
		}
	}
	for pool, used := range gt.MaxUsed {
		if c, ok := capacities[pool]; ok && used > c {
			r.Overbooked = append(r.Overbooked, fmt.Sprintf("%s: %d units in use at one point of the stream > capacity %d", pool, used, c))
		}
	}
	r.Mismatch = append(r.Mismatch, gt.Errors...)
	for _, op := range LapseOps(history, gt) {
		r.Lapses += len(op.Lapses)
		r.Ops = append(r.Ops, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: op, Return: op.Return})
	}
	start := time.Now()
	r.Check, r.NotLinearizable, r.Info = checkLinearizable(NewModel(capacities), r.Ops, timeout)
	r.CheckTime = time.Since(start)
	return r
}

// checkLinearizable checks ops against model within timeout. It checks the
// whole history first without collecting the partial linearizations
// porcupine's report needs (that bookkeeping costs a pass over the
// linearization at every step back, and a check that passes needs none of
// it; an illegal pool stops the others at once). Only when that fails does
// it check each pool again, to name the pools that fail, and collect the
// report for those alone.
func checkLinearizable(model porcupine.Model, ops []porcupine.Operation, timeout time.Duration) (porcupine.CheckResult, []string, porcupine.LinearizationInfo) {
	result := porcupine.CheckOperationsTimeout(model, ops, timeout)
	if result == porcupine.Ok {
		return result, nil, porcupine.LinearizationInfo{}
	}
	var failed []string
	var failedOps []porcupine.Operation
	for _, part := range model.Partition(ops) {
		pool := part[0].Input.(Op).Pool
		if res := porcupine.CheckOperationsTimeout(model, part, timeout); res != porcupine.Ok {
			failed = append(failed, fmt.Sprintf("%s (%s)", pool, res))
			failedOps = append(failedOps, part...)
		}
	}
	_, info := porcupine.CheckOperationsVerbose(model, failedOps, timeout)
	return result, failed, info
}

// lapseClients numbers the lapse operations' pseudo-clients.
const lapseClients = 1 << 20

// LapseOps returns the lapse operations of the history: one per pool and
// deadline that the stream shows holds lapsing at (holds granted while a
// pool's time stood still share one), the moment the pool's recorded time
// reached it, which no client observes directly. Its window comes from the
// pool's history, which is ordered in the pool's time: it follows every
// client write recorded before the pool's time reached the deadline (no
// earlier than the latest call that could have made one of them) and
// precedes every client write decided at or past it (no later than the
// earliest return of one that could have made it). Without such a later
// write it may fall anywhere after the earlier ones, up to AllLapsedBy; and
// never before ClockReaches(deadline): the pool's time is some writer's
// clock reading.
func LapseOps(history []Op, gt *GroundTruth) []Op {
	if len(gt.Lapses) == 0 {
		return nil
	}
	type key struct {
		kind Kind
		id   string
	}
	type bounds struct {
		minCall, maxReturn int64
		unknown            bool // an op of the key has no return: no upper bound
	}
	byKey := map[key]*bounds{}
	for _, op := range history {
		if op.Kind == KindRead || op.Outcome == Rejected {
			continue
		}
		k := key{op.Kind, op.ReservationID}
		b := byKey[k]
		if b == nil {
			b = &bounds{minCall: op.Call}
			byKey[k] = b
		}
		b.minCall = min(b.minCall, op.Call)
		if op.Outcome == OK {
			b.maxReturn = max(b.maxReturn, op.Return)
		} else {
			b.unknown = true
		}
	}
	kindOf := map[string]Kind{capacity.HeldType: KindHold, capacity.ConfirmedType: KindConfirm, capacity.ReleasedType: KindRelease}

	// Per pool, its events in stream order (so in the pool's time), with
	// the latest call of a client write up to each and the earliest
	// return of one from each on.
	type poolLine struct {
		events      []StreamEvent
		callsBefore []int64 // callsBefore[i]: max call over client writes of events[:i]
		returnsFrom []int64 // returnsFrom[i]: min return over client writes of events[i:]
	}
	lines := map[string]*poolLine{}
	for _, ev := range gt.Events {
		if lines[ev.Pool] == nil {
			lines[ev.Pool] = &poolLine{}
		}
		lines[ev.Pool].events = append(lines[ev.Pool].events, ev)
	}
	for _, l := range lines {
		n := len(l.events)
		l.callsBefore, l.returnsFrom = make([]int64, n+1), make([]int64, n+1)
		l.returnsFrom[n] = math.MaxInt64
		for i, ev := range l.events {
			l.callsBefore[i+1] = l.callsBefore[i]
			if b := byKey[key{kindOf[ev.Type], ev.ReservationID}]; b != nil {
				l.callsBefore[i+1] = max(l.callsBefore[i], b.minCall)
			}
		}
		for i := n - 1; i >= 0; i-- {
			ev := l.events[i]
			l.returnsFrom[i] = l.returnsFrom[i+1]
			if b := byKey[key{kindOf[ev.Type], ev.ReservationID}]; b != nil && !b.unknown {
				l.returnsFrom[i] = min(l.returnsFrom[i+1], b.maxReturn)
			}
		}
	}

	type deadline struct {
		pool string
		at   time.Time
	}
	var order []deadline
	groups := map[deadline][]string{}
	for _, l := range gt.Lapses {
		d := deadline{l.Pool, l.ExpiresAt.UTC()}
		if _, ok := groups[d]; !ok {
			order = append(order, d)
		}
		groups[d] = append(groups[d], l.ReservationID)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].pool != order[j].pool {
			return order[i].pool < order[j].pool
		}
		return order[i].at.Before(order[j].at)
	})
	ops := make([]Op, 0, len(order))
	lapseSeq := map[string]int{}
	for i, d := range order {
		l := lines[d.pool]
		// The first event at or past the deadline in the pool's time.
		first := sort.Search(len(l.events), func(j int) bool { return !l.events[j].PoolTime.Before(d.at) })
		ids := groups[d]
		sort.Strings(ids)
		op := Op{
			Client: lapseClients + i, Kind: KindLapse, Pool: d.pool, At: d.at, Lapses: ids, LapseSeq: lapseSeq[d.pool], Outcome: OK,
			Call: l.callsBefore[first], Return: l.returnsFrom[first],
		}
		lapseSeq[d.pool]++
		if gt.ClockReaches != nil {
			op.Call = max(op.Call, gt.ClockReaches(d.at))
		}
		if gt.AllLapsedBy > 0 {
			op.Return = min(op.Return, gt.AllLapsedBy)
		}
		op.Return = max(op.Return, op.Call)
		ops = append(ops, op)
	}
	return ops
}

// WriteReport writes what is needed to understand a failed history into
// dir: history.html (porcupine's visualization), each client's operations
// as JSON, the stream dump, the verdict, and a copy of each log.
func WriteReport(dir string, r *Result, capacities map[string]int, history map[int][]Op, gt *GroundTruth, logs []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	if len(r.NotLinearizable) > 0 {
		errs = append(errs, porcupine.VisualizePath(NewModel(capacities), r.Info, filepath.Join(dir, "history.html")))
	}
	clients := make([]int, 0, len(history))
	for c := range history {
		clients = append(clients, c)
	}
	sort.Ints(clients)
	for _, c := range clients {
		errs = append(errs, writeJSON(filepath.Join(dir, fmt.Sprintf("client-%02d.json", c)), history[c]))
	}
	if gt != nil {
		errs = append(errs, writeJSON(filepath.Join(dir, "stream.json"), gt.Events))
	}
	// The operations exactly as checked (unknowns resolved, times from the
	// stream, lapse operations with windows that also depend on the test's
	// clock schedule), so TestReplayReport checks the same history again.
	checked := make([]Op, len(r.Ops))
	for i, op := range r.Ops {
		checked[i] = op.Output.(Op)
	}
	errs = append(errs, writeJSON(filepath.Join(dir, "checked.json"), checked))
	var verdict strings.Builder
	fmt.Fprintln(&verdict, r.Figures())
	for _, op := range r.Lost {
		fmt.Fprintf(&verdict, "lost: %s\n", describeOp(op))
	}
	for _, s := range r.NotLinearizable {
		fmt.Fprintf(&verdict, "not linearizable: %s\n", s)
	}
	for _, s := range r.Overbooked {
		fmt.Fprintf(&verdict, "overbooked: %s\n", s)
	}
	for _, s := range r.Mismatch {
		fmt.Fprintf(&verdict, "mismatch: %s\n", s)
	}
	errs = append(errs, os.WriteFile(filepath.Join(dir, "verdict.txt"), []byte(verdict.String()), 0o644))
	for _, l := range logs {
		errs = append(errs, copyFile(l, filepath.Join(dir, filepath.Base(filepath.Dir(l))+"-"+filepath.Base(l))))
	}
	return errors.Join(errs...)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
