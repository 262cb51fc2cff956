package pools

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// Booking is a booking as its pools show it: its status (the same in every
// pool: they move together), its one deadline and each item with the
// version of its reservation in that pool (the stream sequence of the
// booking's last commit there, a valid min_position for reads).
type Booking struct {
	ID        string
	Status    capacity.ReservationStatus
	ExpiresAt time.Time
	TTL       time.Duration
	Items     []BookingItem
	// Written is true when the operation stored events; false for an
	// idempotent repeat or a read.
	Written bool
}

// BookingItem is one pool's part of a booking.
type BookingItem struct {
	Pool     string
	Quantity int
	Version  uint64
}

// Position returns the highest version of the booking's items: reading
// at least this position sees the whole booking.
func (b Booking) Position() uint64 {
	var p uint64
	for _, it := range b.Items {
		p = max(p, it.Version)
	}
	return p
}

// part is a pool's share of a booking operation while its entity waits for
// the verdict.
type part struct {
	pool    string
	verdict chan verdict // buffered 1: the coordinator never blocks on it
}

// prepared is what a pool's entity decided for its part, against its state
// at expectedSeq.
type prepared struct {
	pool        string
	expectedSeq uint64
	events      []capacity.Event
	reservation *capacity.Reservation // the booking's reservation before the events, a copy; nil if none
	now         time.Time             // the instant the part was decided at
	// lapsed: the booking's hold in this pool has lapsed at now with no
	// Expired on record. The coordinator then writes Expired in every part
	// instead of the operation's events, and answers answerErr (EEXPIRED
	// for a confirm or an extension).
	lapsed    bool
	answerErr error
}

// verdict is the coordinator's word to a prepared entity.
type verdict struct {
	stored bool   // the prepared part's events (as the coordinator left them) are stored
	seq    uint64 // stored: the part's events are stored at seq
	err    error  // not stored and not known not to be: drop the state
}

// prepare decides one pool's part of a booking, hands it to the
// coordinator and, unless refused, holds the pool (deciding nothing else)
// until the verdict: the events stored at a sequence, nothing written, or
// an outcome it cannot know (it then drops its state and reloads, as after
// a failed append). The wait is bounded by the service's RequestTimeout
// plus AppendTimeout, and ends at shutdown.
func (e *entity) prepare(r *request) {
	svc, opts := e.svc, e.svc.opts
	var events []capacity.Event
	var err error
	var now time.Time
	var lapsed bool
	id := reservationOfPart(r.cmd)
	for attempt := 1; ; attempt++ {
		if err = e.ensureLoaded(); err != nil {
			break
		}
		now = e.pool.TimeAt(opts.Now())
		if rd, ok := r.cmd.(bookingRead); ok {
			events, err = nil, readPart(e.pool, rd.id)
		} else {
			events, err = capacity.Decide(e.pool, r.cmd, now)
		}
		// A lapse this operation relies on (a confirm refused, a read
		// showing it lapsed) is recorded by it, in every part at once.
		res := e.pool.Reservation(id)
		lapsed = res != nil && res.Booking == id && res.Status == capacity.StatusHeld && res.StatusAt(now) == capacity.StatusExpired
		if lapsed {
			events = nil
			switch r.cmd.(type) {
			case capacity.ConfirmBooking, capacity.ExtendBooking:
				err = capacity.Errorf(capacity.EEXPIRED, "hold expired at %s", res.ExpiresAt.Format(time.RFC3339))
			}
			break
		}
		if (err != nil || len(events) == 0) && !opts.NoTailCheck && attempt == 1 {
			// No append will prove the state current: check the tail, as
			// a batch that writes nothing does.
			if moved, terr := e.tailMoved(); terr != nil {
				err = terr
			} else if moved {
				e.pool = nil
				continue
			}
		}
		break
	}
	if err != nil && !lapsed {
		r.reply <- response{err: err} // refused: the pool was not touched
		return
	}
	p := &prepared{pool: e.id, expectedSeq: e.pool.Version, events: events, now: now, lapsed: lapsed}
	if lapsed {
		p.answerErr = err
	}
	if res := e.pool.Reservation(id); res != nil {
		c := *res
		p.reservation = &c
	}
	r.reply <- response{prepared: p}

	wait := time.NewTimer(opts.RequestTimeout + opts.AppendTimeout)
	defer wait.Stop()
	select {
	case v := <-r.part.verdict:
		switch {
		case v.stored:
			events = p.events // the coordinator's (the verdict orders this read after its writes)
			for _, ev := range events {
				e.pool.Evolve(ev, 0)
			}
			e.committed(events, v.seq)
			svc.stats.events.Add(uint64(len(events)))
		case v.err != nil:
			e.pool = nil
		}
	case <-wait.C:
		opts.Logger.Warn().Str("pool", e.id).Msg("no verdict for a booking's part in time; reloading")
		e.pool = nil
	case <-svc.ctx.Done():
		e.pool = nil // shutting down: the coordinator still learns the real outcome
	}
}

// reservationOfPart returns the reservation a booking's part concerns.
func reservationOfPart(cmd capacity.Command) string {
	switch c := cmd.(type) {
	case capacity.HoldBooking:
		return c.BookingID
	case capacity.ConfirmBooking:
		return c.BookingID
	case capacity.ReleaseBooking:
		return c.BookingID
	case capacity.ExtendBooking:
		return c.BookingID
	case capacity.ExpireBooking:
		return c.BookingID
	case bookingRead:
		return c.id
	}
	return ""
}

// bookingRead is the part of a booking read: decides nothing, so that a
// GET sees every pool of the booking at one point of its history.
type bookingRead struct{ id string }

func (bookingRead) Validate() error { return nil }

// readPart checks that the pool holds the booking.
func readPart(p *capacity.Pool, id string) error {
	r := p.Reservation(id)
	switch {
	case !p.Defined():
		return capacity.Errorf(capacity.ENOTFOUND, "pool not found")
	case r == nil:
		return capacity.Errorf(capacity.ENOTFOUND, "booking %s not found in pool %s", id, p.ID)
	case r.Booking != id:
		return capacity.Errorf(capacity.ECONFLICT, "reservation %s in pool %s is not a booking", id, p.ID)
	}
	return nil
}

// maxBookingAttempts bounds the rounds of one booking operation while other
// instances keep moving its pools.
const maxBookingAttempts = 8

// Book holds a booking's items in all its pools, or in none. A refusal
// names the first pool short (in the booking's item order) as the error's
// Pool. The same booking again answers the booking as it is (Written
// false); the id taken with other content is ECONFLICT.
func (s *Service) Book(ctx context.Context, b capacity.Book) (Booking, error) {
	if err := b.Validate(); err != nil {
		return Booking{}, err
	}
	var expiresAt time.Time
	res, err := s.coordinate(ctx, b.BookingID, b.Items, func(now time.Time) capacity.Command {
		if expiresAt.IsZero() {
			expiresAt = now.Add(b.TTL)
		}
		return capacity.HoldBooking{Book: b, ExpiresAt: expiresAt}
	})
	if err == nil && res.Written {
		s.rememberBooking(b.BookingID, b.Items)
	}
	return res, err
}

// ConfirmBooking confirms every item of a booking, or none (EEXPIRED once
// its holds lapsed). items are the booking's (KnownBooking, or a read
// model's copy of its Held event).
func (s *Service) ConfirmBooking(ctx context.Context, id string, items []capacity.BookingItem) (Booking, error) {
	return s.bookingOp(ctx, id, items, func(time.Time) capacity.Command { return capacity.ConfirmBooking{BookingID: id} })
}

// ReleaseBooking gives back every item of a booking; idempotent.
func (s *Service) ReleaseBooking(ctx context.Context, id string, items []capacity.BookingItem) (Booking, error) {
	return s.bookingOp(ctx, id, items, func(time.Time) capacity.Command { return capacity.ReleaseBooking{BookingID: id} })
}

// ExtendBooking gives every hold of a booking the one new deadline now + ttl.
func (s *Service) ExtendBooking(ctx context.Context, id string, ttl time.Duration, items []capacity.BookingItem) (Booking, error) {
	var expiresAt time.Time
	return s.bookingOp(ctx, id, items, func(now time.Time) capacity.Command {
		if expiresAt.IsZero() {
			expiresAt = now.Add(ttl)
		}
		return capacity.ExtendBooking{BookingID: id, TTL: ttl, ExpiresAt: expiresAt}
	})
}

// Booking reads a booking from all its pools at one point of their
// histories, after every write queued before it.
func (s *Service) Booking(ctx context.Context, id string, items []capacity.BookingItem) (Booking, error) {
	return s.bookingOp(ctx, id, items, func(time.Time) capacity.Command { return bookingRead{id: id} })
}

func (s *Service) bookingOp(ctx context.Context, id string, items []capacity.BookingItem, newPart func(time.Time) capacity.Command) (Booking, error) {
	if !capacity.ValidID(id) {
		return Booking{}, capacity.Errorf(capacity.EINVALID, "booking id must be 1-%d characters of [A-Za-z0-9_-]", capacity.MaxIDLength)
	}
	if err := (capacity.Book{BookingID: id, Items: items, TTL: capacity.DefaultTTL}).Validate(); err != nil {
		return Booking{}, capacity.Errorf(capacity.ENOTFOUND, "booking %s not found", id)
	}
	return s.coordinate(ctx, id, items, newPart)
}

// coordinate runs one booking operation over the pools of items, all or
// nothing (see doc.go): it sends each pool's part to the pool's entity in
// pool-id order, each entity decides and holds its pool; then either every
// part is appended as one unit and each entity told its sequence, or
// nothing is written and every entity let go. part makes a pool's part
// command; it is called once per pool and attempt, with the attempt's
// clock reading.
func (s *Service) coordinate(ctx context.Context, id string, items []capacity.BookingItem, newPart func(time.Time) capacity.Command) (Booking, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Booking{}, errShuttingDown
	}
	s.wg.Add(1) // Close waits for the coordinator: it still needs the committer
	s.mu.Unlock()
	defer s.wg.Done()

	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	sorted := capacity.SortedItems(items)
	for attempt := 1; ; attempt++ {
		res, retry, err := s.coordinateOnce(ctx, id, items, sorted, newPart)
		if !retry {
			return res, err
		}
		if attempt >= maxBookingAttempts {
			return Booking{}, capacity.Errorf(capacity.EUNAVAILABLE, "booking %s: its pools are too contended, try again", id)
		}
		s.stats.conflicts.Add(1)
	}
}

// coordinateOnce is one attempt; retry reports that another writer moved a
// pool and nothing was written.
func (s *Service) coordinateOnce(ctx context.Context, id string, items, sorted []capacity.BookingItem, newPart func(time.Time) capacity.Command) (res Booking, retry bool, err error) {
	now := s.opts.Now()
	reqs := make([]*request, 0, len(sorted))
	preps := make(map[string]*prepared, len(sorted))
	refusals := make(map[string]error)
	// Every entity that prepared waits for a word; a refusal or a part
	// never handed over finds its verdict channel unread, which is fine.
	tell := func(v func(pool string) verdict) {
		for _, r := range reqs {
			r.part.verdict <- v(r.part.pool)
		}
	}
	abort := func(string) verdict { return verdict{} }
	for _, it := range sorted {
		r := &request{
			cmd:           newPart(now),
			reservationID: id,
			reply:         make(chan response, 1),
			part:          &part{pool: it.Pool, verdict: make(chan verdict, 1)},
		}
		reqs = append(reqs, r)
		resp, err := s.send(ctx, it.Pool, r)
		if err != nil {
			tell(abort)
			return Booking{}, false, err
		}
		if resp.err != nil {
			refusals[it.Pool] = resp.err
			continue
		}
		preps[it.Pool] = resp.prepared
	}
	if len(refusals) > 0 {
		tell(abort)
		for _, it := range items { // the first refused in the client's order
			if err := refusals[it.Pool]; err != nil {
				return Booking{}, false, namePool(err, it.Pool)
			}
		}
	}
	// A part lapsed with no Expired on record: whatever the operation, the
	// booking expires now in every pool, in this one unit, and the
	// operation answers as on a lapsed booking. Parts decided at earlier
	// clock readings expire at the latest one (a pool's time only moves on).
	var answerErr error
	if lapsedPart(preps) {
		var at time.Time
		for _, p := range preps {
			if p.now.After(at) {
				at = p.now
			}
		}
		for _, p := range preps {
			p.events = nil
			if r := p.reservation; r != nil && r.Booking == id && r.Status == capacity.StatusHeld {
				p.events = []capacity.Event{capacity.Expired{ReservationID: id, At: at, Booking: id}}
			}
		}
		for _, it := range items { // the first in the client's order
			if p := preps[it.Pool]; p.answerErr != nil {
				answerErr = namePool(p.answerErr, it.Pool)
				break
			}
		}
	}
	var commits []capacity.Commit
	for _, it := range sorted {
		if p := preps[it.Pool]; len(p.events) > 0 {
			commits = append(commits, capacity.Commit{Pool: it.Pool, ExpectedSeq: p.expectedSeq, Events: p.events})
		}
	}
	if len(commits) == 0 {
		tell(abort)
		if answerErr != nil {
			return Booking{}, false, answerErr
		}
		return s.bookingOf(id, items, preps, nil), false, nil
	}
	seqs, err := s.appendUnit(commits)
	if err != nil {
		tell(func(string) verdict { return verdict{err: err} })
		if errors.Is(err, capacity.ErrStaleSequence) {
			return Booking{}, true, nil
		}
		s.stats.appendFailures.Add(1)
		s.opts.Logger.Error().Err(err).Str("booking", id).Msg("booking append failed")
		return Booking{}, false, capacity.Errorf(capacity.EUNAVAILABLE, "booking %s: outcome unknown: event store: %v", id, err)
	}
	stored := make(map[string]uint64, len(commits))
	for i, c := range commits {
		stored[c.Pool] = seqs[i]
	}
	tell(func(pool string) verdict {
		if seq, ok := stored[pool]; ok {
			return verdict{stored: true, seq: seq}
		}
		return verdict{}
	})
	s.stats.appends.Add(1)
	if answerErr != nil {
		return Booking{}, false, answerErr
	}
	return s.bookingOf(id, items, preps, stored), false, nil
}

// lapsedPart reports whether some part found the booking lapsed with no
// Expired on record.
func lapsedPart(preps map[string]*prepared) bool {
	for _, p := range preps {
		if p.lapsed {
			return true
		}
	}
	return false
}

// send hands a booking's part to the pool's entity and waits for its
// decision, bounded by ctx and shutdown.
func (s *Service) send(ctx context.Context, pool string, r *request) (response, error) {
	if err := s.submit(pool, r); err != nil {
		return response{}, err
	}
	// A queued request is always answered (see do), also at shutdown.
	select {
	case resp := <-r.reply:
		return resp, nil
	case <-ctx.Done():
		// The part may still be decided; the abort the caller sends
		// waits in its verdict channel. Nothing was written.
		return response{}, capacity.Errorf(capacity.EUNAVAILABLE, "gave up waiting for pool %s: %v", pool, ctx.Err())
	}
}

// appendUnit stores a booking's commits all or nothing: through the
// committer (with other pools' commits, in one atomic batch) or by itself.
// Like an entity's append it is not cut short by the caller or by
// shutdown: the entities waiting for the verdict get the real outcome,
// within AppendTimeout.
func (s *Service) appendUnit(commits []capacity.Commit) ([]uint64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.opts.AppendTimeout)
	defer cancel()
	if s.committer != nil {
		return s.committer.append(ctx, commits...)
	}
	if len(commits) > 1 && s.bookings != nil {
		return s.bookings.append(ctx, commits...)
	}
	if len(commits) == 1 {
		c := commits[0]
		seq, err := s.store.Append(ctx, c.Pool, c.ExpectedSeq, c.Events)
		return []uint64{seq}, err
	}
	return s.store.AppendAll(ctx, commits)
}

// namePool makes sure a part's refusal names its pool.
func namePool(err error, pool string) error {
	var e *capacity.Error
	if !errors.As(err, &e) || e.Pool != "" {
		return err
	}
	c := *e
	c.Pool = pool
	return &c
}

// bookingOf builds the booking's answer from the parts as prepared and,
// for the pools written, the sequences they were stored at.
func (s *Service) bookingOf(id string, items []capacity.BookingItem, preps map[string]*prepared, stored map[string]uint64) Booking {
	b := Booking{ID: id, Written: len(stored) > 0}
	var first *capacity.Reservation
	for _, p := range preps {
		if r := p.reservation; r != nil && len(r.Items) > 0 {
			items = r.Items // the booking's own order
			break
		}
	}
	for _, it := range items {
		p := preps[it.Pool]
		item := BookingItem{Pool: it.Pool, Quantity: it.Quantity}
		r := p.reservation
		if r != nil {
			c := *r
			c.Status = c.StatusAt(p.now)
			r = &c
			item.Version = r.Version
		}
		for _, ev := range p.events {
			r = applyToReservation(r, ev)
		}
		if seq, ok := stored[it.Pool]; ok {
			item.Version = seq
		}
		if r != nil {
			item.Quantity = r.Quantity
			if first == nil {
				first = r
			}
		}
		b.Items = append(b.Items, item)
	}
	if first != nil {
		b.Status, b.ExpiresAt, b.TTL = first.Status, first.ExpiresAt, first.TTL
	}
	return b
}

// applyToReservation returns what a booking's reservation becomes by one of
// the events a part decides (a copy; r is not changed).
func applyToReservation(r *capacity.Reservation, ev capacity.Event) *capacity.Reservation {
	var c capacity.Reservation
	if r != nil {
		c = *r
	}
	switch e := ev.(type) {
	case capacity.Held:
		c = capacity.Reservation{ID: e.ReservationID, Quantity: e.Quantity, TTL: e.TTL, Status: capacity.StatusHeld,
			HeldAt: e.At, ExpiresAt: e.ExpiresAt, UpdatedAt: e.At, Booking: e.Booking, Items: e.Items}
	case capacity.Confirmed:
		c.Status = capacity.StatusConfirmed
	case capacity.Released:
		c.Status = capacity.StatusReleased
	case capacity.Expired:
		c.Status = capacity.StatusExpired
	case capacity.Extended:
		c.ExpiresAt = e.ExpiresAt
	}
	return &c
}

// knownBookings remembers the items of bookings this process wrote, so a
// confirm right after a booking needs no read model to find its pools. A
// booking's items never change, so an entry is never stale; the map is
// bounded by forgetting everything when full.
type knownBookings struct {
	mu    sync.Mutex
	items map[string][]capacity.BookingItem
}

const maxKnownBookings = 100_000

func (s *Service) rememberBooking(id string, items []capacity.BookingItem) {
	k := &s.known
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.items == nil || len(k.items) >= maxKnownBookings {
		k.items = make(map[string][]capacity.BookingItem)
	}
	k.items[id] = slices.Clone(items)
}

// KnownBooking returns the items of a booking this process has written or
// expired recently, if it remembers them; otherwise the caller finds them
// in a read model (a booking's Held event in any of its pools).
func (s *Service) KnownBooking(id string) ([]capacity.BookingItem, bool) {
	k := &s.known
	k.mu.Lock()
	defer k.mu.Unlock()
	items, ok := k.items[id]
	return items, ok
}

// expireBookings hands the bookings whose holds lapsed in this pool to the
// service's booking expirer, which writes Expired in all their pools at
// once (the sweeper leaves them alone, capacity.Expire).
func (e *entity) expireBookings() {
	for _, id := range e.pool.LapsedBookings(e.pool.TimeAt(e.svc.opts.Now())) {
		e.svc.queueBookingExpiry(id, e.pool.Reservations[id].Items)
	}
}

type bookingExpiry struct {
	id    string
	items []capacity.BookingItem
}

// queueBookingExpiry queues a booking's expiry unless it is queued already;
// a full queue drops it (the pool's sweeper asks again).
func (s *Service) queueBookingExpiry(id string, items []capacity.BookingItem) {
	s.expiryMu.Lock()
	defer s.expiryMu.Unlock()
	if s.expiring[id] {
		return
	}
	select {
	case s.expiries <- bookingExpiry{id: id, items: items}:
		s.expiring[id] = true
	default:
	}
}

// expireLapsedBookings writes the Expired events of lapsed bookings, all
// the parts of one booking as one unit, until the service stops.
func (s *Service) expireLapsedBookings() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case x := <-s.expiries:
			_, err := s.coordinate(s.ctx, x.id, x.items, func(time.Time) capacity.Command { return capacity.ExpireBooking{BookingID: x.id} })
			if err != nil && s.ctx.Err() == nil {
				s.opts.Logger.Warn().Err(err).Str("booking", x.id).Msg("expiring a booking's holds")
			}
			s.expiryMu.Lock()
			delete(s.expiring, x.id)
			s.expiryMu.Unlock()
		}
	}
}
