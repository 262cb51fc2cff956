package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
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
	// Quantity of a Held; of a Confirmed, the units kept (0: all).
	Quantity int `json:"quantity,omitempty"`
	// Booking is the booking an event belongs to; Items (Held) its pools.
	Booking string `json:"booking,omitempty"`
	Items   []Item `json:"items,omitempty"`
	// TTL of an Extended event (the extension asked for).
	TTL      time.Duration `json:"ttl,omitempty"`
	Capacity int           `json:"capacity,omitempty"`
	Err      string        `json:"err,omitempty"`
	// At is the time the deciding instance recorded on the event;
	// ExpiresAt a hold's deadline (Held and Extended).
	At        time.Time `json:"at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// PoolTime is the pool's recorded time after this event: the latest
	// At of its events so far (set by GroundTruthOf).
	PoolTime time.Time `json:"-"`
}

// ResKey names a reservation in a pool: a booking's id names one
// reservation in each of its pools.
type ResKey struct{ Pool, ID string }

// GroundTruth is what the event stream says happened.
type GroundTruth struct {
	Events    []StreamEvent
	Held      map[ResKey]StreamEvent
	Confirmed map[ResKey]StreamEvent
	Released  map[ResKey]StreamEvent
	Expired   map[ResKey]StreamEvent
	Extended  map[ResKey][]StreamEvent // in stream order
	// PartialBookings are bookings the stream shows in some of their pools
	// but not all (held, confirmed or extended in some only): must be none.
	PartialBookings []string
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
		if err != nil {
			if ev.Seq == 0 {
				return nil, fmt.Errorf("reading the stream: %w", err)
			}
			events = append(events, StreamEvent{Seq: ev.Seq, Pool: ev.Pool, Err: err.Error()})
			continue
		}
		events = append(events, streamEventOf(ev.Seq, ev.Pool, ev.Event))
	}
	return GroundTruthOf(events), nil
}

// streamEventOf describes one decoded event of a pool's commit at seq.
func streamEventOf(seq uint64, pool string, event capacity.Event) StreamEvent {
	se := StreamEvent{Seq: seq, Pool: pool, Type: event.EventType()}
	switch e := event.(type) {
	case capacity.PoolDefined:
		se.Capacity, se.At = e.Capacity+e.Overbook, e.DefinedAt
	case capacity.CapacityChanged:
		se.Capacity, se.At = e.To, e.At
	case capacity.Held:
		se.ReservationID, se.Quantity, se.At, se.ExpiresAt, se.Booking = e.ReservationID, e.Quantity, e.At, e.ExpiresAt, e.Booking
		for _, it := range e.Items {
			se.Items = append(se.Items, Item{Pool: it.Pool, Quantity: it.Quantity})
		}
	case capacity.Confirmed:
		se.ReservationID, se.At, se.Quantity, se.Booking = e.ReservationID, e.At, e.Quantity, e.Booking
	case capacity.Released:
		se.ReservationID, se.At, se.Booking = e.ReservationID, e.At, e.Booking
	case capacity.Expired:
		se.ReservationID, se.At, se.Booking = e.ReservationID, e.At, e.Booking
	case capacity.Extended:
		se.ReservationID, se.At, se.ExpiresAt, se.TTL, se.Booking = e.ReservationID, e.At, e.ExpiresAt, e.TTL, e.Booking
	}
	return se
}

// ReadStreamEvents reads every event of the stream called name in the
// JetStream of the NATS at url, whatever it is (a region's stream, a copy,
// one set aside by failback), without changing it: an ordered consumer
// from the first message to the last one stored when it starts.
func ReadStreamEvents(ctx context.Context, url, name string) ([]StreamEvent, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	last := stream.CachedInfo().State.LastSeq
	if last == 0 {
		return nil, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	defer msgs.Stop()
	var events []StreamEvent
	for {
		m, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		seq := meta.Sequence.Stream
		rec, err := streams.Decode(m.Subject(), seq, meta.Timestamp, m.Headers(), m.Data())
		var decoded []capacity.Event
		if err == nil {
			decoded, err = rec.Events()
		}
		if err != nil {
			events = append(events, StreamEvent{Seq: seq, Pool: rec.Pool, Err: err.Error()})
		}
		for _, e := range decoded {
			events = append(events, streamEventOf(seq, rec.Pool, e))
		}
		if seq >= last {
			return events, nil
		}
	}
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
		Held:   map[ResKey]StreamEvent{}, Confirmed: map[ResKey]StreamEvent{}, Released: map[ResKey]StreamEvent{},
		Expired: map[ResKey]StreamEvent{}, Extended: map[ResKey][]StreamEvent{},
		Final: map[string]Figures{}, MaxUsed: map[string]int{},
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
		key := ResKey{se.Pool, se.ReservationID}
		switch se.Type {
		case capacity.PoolDefinedType, capacity.CapacityChangedType:
			f.Capacity = se.Capacity
		case capacity.HeldType:
			if _, dup := gt.Held[key]; dup {
				gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: reservation %s held twice in %s", se.Seq, se.ReservationID, se.Pool))
			}
			gt.Held[key] = *se
			pr[se.ReservationID] = &resvState{qty: se.Quantity, status: 'h', expiresAt: se.ExpiresAt, heldSeq: se.Seq}
			f.Held += se.Quantity
		case capacity.ConfirmedType:
			gt.Confirmed[key] = *se
			if r != nil && r.status == 'h' {
				if lapsed(r) {
					gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: confirmed %s at pool time %s (event at %s), at or past its deadline %s",
						se.Seq, se.ReservationID, now.Format(time.RFC3339Nano), se.At.Format(time.RFC3339Nano), r.expiresAt.Format(time.RFC3339Nano)))
				}
				kept := r.qty
				if se.Quantity > 0 {
					if se.Quantity > r.qty {
						gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: confirmed %d units of %s which holds %d", se.Seq, se.Quantity, se.ReservationID, r.qty))
					}
					kept = se.Quantity // the rest is given back
				}
				r.status = 'c'
				f.Held -= r.qty
				f.Confirmed += kept
				r.qty = kept
			} else {
				gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: confirmed %s which is not held", se.Seq, se.ReservationID))
			}
		case capacity.ReleasedType:
			gt.Released[key] = *se
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
			gt.Expired[key] = *se
			if r != nil && r.status == 'h' {
				if !lapsed(r) {
					gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: expired %s at pool time %s, before its deadline %s",
						se.Seq, se.ReservationID, now.Format(time.RFC3339Nano), r.expiresAt.Format(time.RFC3339Nano)))
				}
				f.Held -= r.qty
				r.status = 'x'
				gt.Lapses = append(gt.Lapses, Lapse{Pool: se.Pool, ReservationID: se.ReservationID, ExpiresAt: r.expiresAt, HeldSeq: r.heldSeq, ExpiredSeq: se.Seq})
			}
		case capacity.ExtendedType:
			gt.Extended[key] = append(gt.Extended[key], *se)
			switch {
			case r == nil || r.status != 'h':
				gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: extended %s which is not held", se.Seq, se.ReservationID))
			case lapsed(r):
				gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: extended %s at pool time %s, at or past its deadline %s: it had lapsed",
					se.Seq, se.ReservationID, now.Format(time.RFC3339Nano), r.expiresAt.Format(time.RFC3339Nano)))
			case !se.ExpiresAt.After(r.expiresAt):
				gt.Errors = append(gt.Errors, fmt.Sprintf("seq %d: extended %s to %s, not after its deadline %s",
					se.Seq, se.ReservationID, se.ExpiresAt.Format(time.RFC3339Nano), r.expiresAt.Format(time.RFC3339Nano)))
			default:
				r.expiresAt = se.ExpiresAt
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
	gt.checkBookings()
	return gt
}

// checkBookings finds the bookings the stream shows in some of their pools
// but not all: every pool of a booking (its Held events' items) must hold
// it with its item's units, and it must be confirmed in all or none and
// extended as often in each. (Released and Expired may differ: a release
// writes nothing in a pool whose part has already lapsed there, and each
// pool's recorded time reaches the shared deadline on its own.)
func (gt *GroundTruth) checkBookings() {
	seen := map[string]bool{}
	var ids []string
	items := map[string][]Item{}
	for _, ev := range gt.Held {
		if ev.Booking == "" || seen[ev.Booking] {
			continue
		}
		seen[ev.Booking] = true
		ids = append(ids, ev.Booking)
		items[ev.Booking] = ev.Items
	}
	sort.Strings(ids)
	for _, id := range ids {
		var held, confirmed []string
		extended := map[string]int{}
		for _, it := range items[id] {
			k := ResKey{it.Pool, id}
			h, ok := gt.Held[k]
			if ok && h.Booking == id && h.Quantity == it.Quantity {
				held = append(held, it.Pool)
			}
			if _, ok := gt.Confirmed[k]; ok {
				confirmed = append(confirmed, it.Pool)
			}
			extended[it.Pool] = len(gt.Extended[k])
		}
		n := len(items[id])
		bad := len(held) != n || len(confirmed) != 0 && len(confirmed) != n
		for _, it := range items[id] {
			bad = bad || extended[it.Pool] != extended[items[id][0].Pool]
		}
		if bad {
			msg := fmt.Sprintf("partial booking %s: items %v; held in %v, confirmed in %v, extensions %v", id, items[id], held, confirmed, extended)
			gt.PartialBookings = append(gt.PartialBookings, msg)
			gt.Errors = append(gt.Errors, msg)
		}
	}
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
	// Bookings are the figures of the booking operations (POST
	// /v1/bookings) alone; Extends and PartialConfirms count acknowledged
	// extensions and confirms that named a quantity.
	Bookings        BookingFigures
	Extends         int
	PartialConfirms int
	// PartialBookings are bookings found in some of their pools but not
	// all, by the history's operations or in the stream: must be none.
	PartialBookings []string
	Overbooked      []string
	Lost            []Op // acknowledged writes absent from the stream
	Mismatch        []string
	Check           porcupine.CheckResult
	CheckTime       time.Duration
	// NotLinearizable names the pools whose history the check found
	// illegal, or could not decide in time, each with its verdict.
	NotLinearizable []string
	// Info is porcupine's account of the pools that failed (none when the
	// check passed): what history.html shows.
	Info porcupine.LinearizationInfo
	Ops  []porcupine.Operation
}

// BookingFigures count the bookings of a history.
type BookingFigures struct {
	Attempted, Acked, Refused, Unknown, Happened int
}

// Failed reports whether the history breaks a promise.
func (r *Result) Failed() bool {
	return r.Check != porcupine.Ok || len(r.Lost) > 0 || len(r.Overbooked) > 0 || len(r.Mismatch) > 0 || len(r.PartialBookings) > 0
}

// Figures is the one-line summary.
func (r *Result) Figures() string {
	lapses := ""
	if r.Lapses > 0 {
		lapses = fmt.Sprintf(" lapsed_holds=%d", r.Lapses)
	}
	bookings := ""
	if b := r.Bookings; b.Attempted > 0 || r.Extends > 0 || r.PartialConfirms > 0 {
		bookings = fmt.Sprintf(" bookings attempted=%d acknowledged=%d refused=%d unknown=%d (happened=%d) partial_bookings=%d extends=%d partial_confirms=%d",
			b.Attempted, b.Acked, b.Refused, b.Unknown, b.Happened, len(r.PartialBookings), r.Extends, r.PartialConfirms)
	}
	return fmt.Sprintf("ops attempted=%d acknowledged=%d rejected_for_capacity=%d rejected_other=%d unknown=%d (happened=%d)%s%s overbooked_pools=%d lost_acks=%d linearizable=%s (checked in %v)",
		r.Attempted, r.Acked, r.RejectedCapacity, r.Rejected-r.RejectedCapacity, r.Unknown, r.UnknownHappened, lapses, bookings,
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
	acked := map[Kind]map[string]bool{KindConfirm: {}, KindRelease: {}, KindExtend: {}, KindBookConfirm: {}, KindBookRelease: {}, KindBookExtend: {}}
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
		inStream, partial := r.resolve(&op, gt)
		if partial != "" {
			r.PartialBookings = append(r.PartialBookings, partial)
		}
		if op.Kind == KindBook {
			r.Bookings.Attempted++
			switch op.Outcome {
			case OK:
				r.Bookings.Acked++
			case Rejected:
				r.Bookings.Refused++
			case Unknown:
				r.Bookings.Unknown++
				if inStream {
					r.Bookings.Happened++
				}
			}
		}
		if op.Outcome == OK && (op.Kind == KindExtend || op.Kind == KindBookExtend) {
			r.Extends++
		}
		if op.Outcome == OK && op.Kind == KindConfirm && op.Quantity > 0 {
			r.PartialConfirms++
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
	r.PartialBookings = append(r.PartialBookings, gt.PartialBookings...)
	slices.Sort(r.PartialBookings)
	r.PartialBookings = slices.CompactFunc(r.PartialBookings, func(a, b string) bool { return bookingOf(a) == bookingOf(b) })
	for _, op := range LapseOps(history, gt) {
		r.Lapses += len(op.Lapses)
		r.Ops = append(r.Ops, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: op, Return: op.Return})
	}
	start := time.Now()
	r.Check, r.NotLinearizable, r.Info = checkLinearizable(NewModel(capacities), r.Ops, timeout)
	r.CheckTime = time.Since(start)
	return r
}

// resolve finds op's effect in the stream: whether it is there, and for a
// write that is, the times the model needs (see model.go) copied into op.
// partial describes a booking found in some of its pools only.
func (r *Result) resolve(op *Op, gt *GroundTruth) (inStream bool, partial string) {
	key := ResKey{op.Pool, op.ReservationID}
	switch op.Kind {
	case KindHold:
		fact, ok := gt.Held[key]
		if ok && fact.Quantity == op.Quantity && fact.Booking == "" {
			op.At, op.ExpiresAt = fact.At, fact.ExpiresAt
			return true, ""
		}
	case KindConfirm:
		fact, ok := gt.Confirmed[key]
		if ok && op.Outcome == Unknown {
			// Of several confirms of one reservation the stream shows only
			// the one that wrote: an unknown one that asked for other units
			// did not write it (a repeat changes nothing: dropping it is
			// the same).
			held := gt.Held[key].Quantity
			want, kept := held, held
			if op.Quantity > 0 {
				want = op.Quantity
			}
			if fact.Quantity > 0 {
				kept = fact.Quantity
			}
			return want == kept, ""
		}
		return ok, ""
	case KindRelease:
		if _, ok := gt.Released[key]; ok {
			return true, ""
		}
		if op.Outcome == OK && op.ResStatus == "expired" {
			// Releasing a lapsed hold changes nothing: its lapse is
			// what the stream must show.
			_, ok := gt.Expired[key]
			return ok, ""
		}
	case KindExtend:
		if ev, ok := extension(gt, key, op.TTL); ok {
			op.At, op.ExpiresAt = ev.At, ev.ExpiresAt
			return true, ""
		}
	case KindBook:
		items := make([]Item, len(op.Items))
		var found []string
		for i, it := range op.Items {
			items[i] = it
			fact, ok := gt.Held[ResKey{it.Pool, op.ReservationID}]
			if ok && fact.Booking == op.ReservationID && fact.Quantity == it.Quantity {
				found = append(found, it.Pool)
				items[i].At, op.ExpiresAt = fact.At, fact.ExpiresAt
			}
		}
		switch len(found) {
		case len(op.Items):
			op.Items = items
			return true, ""
		case 0:
			return false, ""
		}
		return false, fmt.Sprintf("partial booking %s (client %d, %s): items %v, in the stream in %v only", op.ReservationID, op.Client, op.Outcome, op.Items, found)
	case KindBookConfirm, KindBookRelease, KindBookExtend:
		items := make([]Item, len(op.Items))
		copy(items, op.Items)
		any := false
		for i, it := range op.Items {
			k := ResKey{it.Pool, op.ReservationID}
			switch op.Kind {
			case KindBookConfirm:
				_, ok := gt.Confirmed[k]
				any = any || ok
			case KindBookRelease:
				_, ok := gt.Released[k]
				if !ok && op.Outcome == OK && op.ResStatus == "expired" {
					_, ok = gt.Expired[k]
				}
				any = any || ok
			case KindBookExtend:
				if ev, ok := extension(gt, k, op.TTL); ok {
					any = true
					items[i].At, op.ExpiresAt = ev.At, ev.ExpiresAt
				}
			}
		}
		if any {
			op.Items = items
		}
		return any, ""
	}
	return false, ""
}

// bookingOf returns the booking id a partial booking's description names.
func bookingOf(partial string) string {
	f := strings.Fields(partial)
	if len(f) < 3 {
		return partial
	}
	return strings.TrimSuffix(f[2], ":")
}

// extension returns the Extended event of reservation k that asked for ttl
// (the traffic never asks one reservation for the same ttl twice).
func extension(gt *GroundTruth, k ResKey, ttl string) (StreamEvent, bool) {
	d, err := time.ParseDuration(ttl)
	if err != nil {
		return StreamEvent{}, false
	}
	for _, ev := range gt.Extended[k] {
		if ev.TTL == d {
			return ev, true
		}
	}
	return StreamEvent{}, false
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
		pool := groupName(part)
		if res := porcupine.CheckOperationsTimeout(model, part, timeout); res != porcupine.Ok {
			failed = append(failed, fmt.Sprintf("%s (%s)", pool, res))
			failedOps = append(failedOps, part...)
		}
	}
	_, info := porcupine.CheckOperationsVerbose(model, failedOps, timeout)
	return result, failed, info
}

// groupName names a partition by its pools.
func groupName(part []porcupine.Operation) string {
	seen := map[string]bool{}
	for _, op := range part {
		for _, p := range op.Input.(Op).Pools() {
			seen[p] = true
		}
	}
	return strings.Join(slices.Sorted(maps.Keys(seen)), "+")
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
	kindOf := func(ev StreamEvent) Kind {
		kinds := map[string][2]Kind{
			capacity.HeldType:      {KindHold, KindBook},
			capacity.ConfirmedType: {KindConfirm, KindBookConfirm},
			capacity.ReleasedType:  {KindRelease, KindBookRelease},
			capacity.ExtendedType:  {KindExtend, KindBookExtend},
		}
		k, ok := kinds[ev.Type]
		switch {
		case !ok:
			return ""
		case ev.Booking != "":
			return k[1]
		}
		return k[0]
	}

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
			if b := byKey[key{kindOf(ev), ev.ReservationID}]; b != nil {
				l.callsBefore[i+1] = max(l.callsBefore[i], b.minCall)
			}
		}
		for i := n - 1; i >= 0; i-- {
			ev := l.events[i]
			l.returnsFrom[i] = l.returnsFrom[i+1]
			if b := byKey[key{kindOf(ev), ev.ReservationID}]; b != nil && !b.unknown {
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
	// clock schedule), so ReplayReport (go run ./e2e/cmd/replayreport) checks the same history again.
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
