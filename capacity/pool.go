package capacity

import (
	"container/heap"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"time"
)

// Status says whether a pool takes new holds.
type Status string

// Pool statuses.
const (
	Open   Status = "open"
	Closed Status = "closed"
)

// ReservationStatus is where a reservation is in its life.
type ReservationStatus string

// Reservation statuses. A held reservation past its deadline reads as
// StatusExpired (see Reservation.StatusAt) before its Expired event is written.
const (
	StatusHeld      ReservationStatus = "held"
	StatusConfirmed ReservationStatus = "confirmed"
	StatusReleased  ReservationStatus = "released"
	StatusExpired   ReservationStatus = "expired"
)

// Reservation is one customer's claim on units of a pool.
type Reservation struct {
	ID        string            `json:"reservation_id"`
	Quantity  int               `json:"quantity"`
	TTL       time.Duration     `json:"ttl"`
	Status    ReservationStatus `json:"status"`
	HeldAt    time.Time         `json:"held_at"`
	ExpiresAt time.Time         `json:"expires_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	Version   uint64            `json:"version"`
	// HeldQuantity is the units first held, set only once a partial
	// confirmation made Quantity smaller: a retried hold is recognised by it.
	HeldQuantity int `json:"held_quantity,omitempty"`
	// Booking is the booking this reservation is one pool's part of (its
	// id is the booking's), with the booking's items in every pool; empty
	// for a plain hold.
	Booking string        `json:"booking,omitempty"`
	Items   []BookingItem `json:"items,omitempty"`
}

// Equal reports whether two reservations are the same in every field.
func (r Reservation) Equal(o Reservation) bool {
	return r.ID == o.ID && r.Quantity == o.Quantity && r.TTL == o.TTL && r.Status == o.Status &&
		r.HeldAt == o.HeldAt && r.ExpiresAt == o.ExpiresAt && r.UpdatedAt == o.UpdatedAt &&
		r.Version == o.Version && r.HeldQuantity == o.HeldQuantity && r.Booking == o.Booking &&
		slices.Equal(r.Items, o.Items)
}

// heldQuantity returns the units the reservation's hold asked for.
func (r *Reservation) heldQuantity() int {
	if r.HeldQuantity > 0 {
		return r.HeldQuantity
	}
	return r.Quantity
}

// StatusAt returns the reservation's status as seen at now: a hold whose
// deadline has passed is expired even before the sweeper has written so.
func (r *Reservation) StatusAt(now time.Time) ReservationStatus {
	if r.Status == StatusHeld && r.lapsed(now) {
		return StatusExpired
	}
	return r.Status
}

// lapsed reports whether a hold's deadline is at or before now.
func (r *Reservation) lapsed(now time.Time) bool {
	return !now.Before(r.ExpiresAt)
}

// Pool is the aggregate: one capacity pool and every reservation against it.
// Its state is only ever changed by Evolve, one event at a time, so replaying
// a pool's history always rebuilds the same pool.
type Pool struct {
	ID        string    `json:"id"`
	Region    string    `json:"region"`
	Kind      string    `json:"kind"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	Capacity  int       `json:"capacity"`
	Overbook  int       `json:"overbook"`
	Status    Status    `json:"status"`
	Version   uint64    `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	// Reservations are the live and recently finished reservations (see
	// RetainFinished). Copies of the pool share them (Clone), so a
	// *Reservation in the map is never changed: Evolve replaces it.
	Reservations map[string]*Reservation `json:"reservations"`

	// What PoolDefined said that the fields above may no longer say (see
	// Definition); the rest of it is ID to EndsAt, which only PoolDefined
	// sets. A whole PoolDefined here would cost every copy of every pool
	// 136 bytes, and there are a million pools.
	definedCapacity, definedOverbook int
	definedAt                        time.Time
	retired                          retiredSet    // what stays of reservations finished RetainFinished ago (see Reservation)
	finished                         []finishedRef // finished reservations still kept whole, oldest first, from finishedHead
	finishedHead                     int
	heldUnits                        int // units of every reservation in StatusHeld, lapsed or not
	confirmedUnits                   int
	unstamped                        int // events evolved with seq 0 and not stamped yet
	deadlines                        deadlines
	memo                             lapseMemo
}

// lapseMemo caches the units of lapsed holds for a span of time in which the
// answer cannot change, so a full pool rejecting a stream of holds scans its
// reservations once, not once per hold. Evolve clears it.
//
// Filling the memo writes to the pool, so even reads (FiguresAt, Decide) must
// stay on the pool's one goroutine.
//
// The bounds are unix nanoseconds (wall time, as time.Time.Before compares
// it) rather than time.Time values: the memo is in every pool, loaded or
// folded by a read model, and less than half the size this way.
// The zero memo holds for no instant (from == until).
type lapseMemo struct {
	from  int64 // the memo holds for now in [from, until), unix nanoseconds
	until int64
	units int
}

// Defined reports whether the pool has been defined.
func (p *Pool) Defined() bool { return p.ID != "" }

// Definition returns the PoolDefined event that defined the pool: a retried
// define is recognised by it. Zero if the pool is not defined.
func (p *Pool) Definition() PoolDefined {
	if !p.Defined() {
		return PoolDefined{}
	}
	return PoolDefined{
		Pool: p.ID, Region: p.Region, Kind: p.Kind, StartsAt: p.StartsAt, EndsAt: p.EndsAt,
		Capacity: p.definedCapacity, Overbook: p.definedOverbook, DefinedAt: p.definedAt,
	}
}

// poolJSON is a pool's JSON encoding (a snapshot's head): the fields of
// Pool, with its definition whole, as snapshots have always had it.
type poolJSON struct {
	ID           string                  `json:"id"`
	Region       string                  `json:"region"`
	Kind         string                  `json:"kind"`
	StartsAt     time.Time               `json:"starts_at"`
	EndsAt       time.Time               `json:"ends_at"`
	Capacity     int                     `json:"capacity"`
	Overbook     int                     `json:"overbook"`
	Status       Status                  `json:"status"`
	Definition   PoolDefined             `json:"definition"`
	Version      uint64                  `json:"version"`
	UpdatedAt    time.Time               `json:"updated_at"`
	Reservations map[string]*Reservation `json:"reservations"`
}

func (p *Pool) toJSON() poolJSON {
	return poolJSON{
		ID: p.ID, Region: p.Region, Kind: p.Kind, StartsAt: p.StartsAt, EndsAt: p.EndsAt,
		Capacity: p.Capacity, Overbook: p.Overbook, Status: p.Status, Definition: p.Definition(),
		Version: p.Version, UpdatedAt: p.UpdatedAt, Reservations: p.Reservations,
	}
}

func (p *Pool) fromJSON(j *poolJSON) {
	p.ID, p.Region, p.Kind, p.StartsAt, p.EndsAt = j.ID, j.Region, j.Kind, j.StartsAt, j.EndsAt
	p.Capacity, p.Overbook, p.Status, p.Version, p.UpdatedAt = j.Capacity, j.Overbook, j.Status, j.Version, j.UpdatedAt
	p.Reservations = j.Reservations
	p.definedCapacity, p.definedOverbook, p.definedAt = j.Definition.Capacity, j.Definition.Overbook, j.Definition.DefinedAt
}

// MarshalJSON encodes the pool as poolJSON.
func (p Pool) MarshalJSON() ([]byte, error) { return json.Marshal(p.toJSON()) }

// UnmarshalJSON decodes what MarshalJSON wrote into the pool's exported
// fields and its definition.
func (p *Pool) UnmarshalJSON(data []byte) error {
	var j poolJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	p.fromJSON(&j)
	return nil
}

// Limit is the most units the pool may have held and confirmed at once.
func (p *Pool) Limit() int { return p.Capacity + p.Overbook }

// Figures are a pool's counts as seen at one instant.
type Figures struct {
	Held         int  `json:"held"`
	Confirmed    int  `json:"confirmed"`
	Available    int  `json:"available"`
	OverCapacity bool `json:"over_capacity"`
}

// FiguresAt returns the pool's counts at now: lapsed holds count as free.
// Available is what a hold could still take (Limit minus held and
// confirmed), so a hold of q units fits iff q <= Available. It is negative,
// and the pool OverCapacity, only when capacity was cut below what is booked.
func (p *Pool) FiguresAt(now time.Time) Figures {
	held := p.heldUnits - p.lapsedUnits(now)
	available := p.Limit() - held - p.confirmedUnits
	return Figures{
		Held:         held,
		Confirmed:    p.confirmedUnits,
		Available:    available,
		OverCapacity: available < 0,
	}
}

// PoolView is a pool as a client sees it at one instant: its definition,
// version and figures, without its reservations. The write side answers
// with it, the availability read model lists it, and web turns it into the
// API's pool object (the JSON contract lives there, not here).
type PoolView struct {
	// HomeRegion is the region whose event stream holds the pool (the
	// region that defined it); "" when the reader does not say.
	HomeRegion string
	ID         string
	Region     string
	Kind       string
	StartsAt   time.Time
	EndsAt     time.Time
	Capacity   int
	Overbook   int
	Status     Status
	Version    uint64
	Figures
}

// ViewAt returns the pool's view at now: lapsed holds count as free.
func (p *Pool) ViewAt(now time.Time) PoolView {
	return PoolView{
		ID: p.ID, Region: p.Region, Kind: p.Kind, StartsAt: p.StartsAt, EndsAt: p.EndsAt,
		Capacity: p.Capacity, Overbook: p.Overbook, Status: p.Status, Version: p.Version,
		Figures: p.FiguresAt(now),
	}
}

// usedUnits returns the units counting against the limit at now.
func (p *Pool) usedUnits(now time.Time) int {
	return p.heldUnits + p.confirmedUnits - p.lapsedUnits(now)
}

// lapsedUnits returns the units of holds still in StatusHeld whose deadline
// has passed at now.
func (p *Pool) lapsedUnits(now time.Time) int {
	m := &p.memo
	nowNano := now.UnixNano()
	if nowNano >= m.from && nowNano < m.until {
		return m.units
	}
	units := 0
	next := p.walkLapsed(now, func(r *Reservation) { units += r.Quantity })
	until := int64(math.MaxInt64)
	if !next.IsZero() {
		until = next.UnixNano()
	}
	*m = lapseMemo{from: nowNano, until: until, units: units}
	return units
}

// Units returns the units of the reservations held (lapsed or not) and
// confirmed: what FiguresAt starts from. It writes nothing.
func (p *Pool) Units() (held, confirmed int) { return p.heldUnits, p.confirmedUnits }

// LapsedAt returns the units of the live holds whose deadline is at or
// before now, and a lower bound of the next live deadline after now (zero
// if there is none): until then, the units stay the same. Unlike FiguresAt
// it writes nothing, so readers that share the pool under a read lock (the
// read models) may call it; they keep their own memo.
func (p *Pool) LapsedAt(now time.Time) (units int, next time.Time) {
	next = p.walkLapsed(now, func(r *Reservation) { units += r.Quantity })
	return units, next
}

// LapsedHolds returns, sorted, the ids of holds whose deadline passed at or
// before now and for which no Expired event exists yet. Sorted so that
// Expire decides the same events in the same order on every replica.
func (p *Pool) LapsedHolds(now time.Time) []string {
	var ids []string
	p.walkLapsed(now, func(r *Reservation) { ids = append(ids, r.ID) })
	slices.Sort(ids)
	return ids
}

// LapsedBookings returns, sorted, the ids of bookings whose holds in this
// pool passed their deadline at or before now without an Expired event yet.
// Expire leaves them alone: a booking's holds expire in all its pools at
// once, by the write side's booking path (ExpireBooking).
func (p *Pool) LapsedBookings(now time.Time) []string {
	var ids []string
	p.walkLapsed(now, func(r *Reservation) {
		if r.Booking != "" {
			ids = append(ids, r.ID)
		}
	})
	slices.Sort(ids)
	return ids
}

// SingleTimeAt returns the instant a single-pool decision taken at now is
// taken at: TimeAt(now), but kept before the deadline of any booking part
// that lapsed by then while the pool's recorded time is short of its
// deadline. A single pool cannot record such a lapse (a booking's parts
// expire together, in one commit over all its pools: ExpireBooking), so a
// decision or a read that relied on it could be undone by a writer whose
// clock is behind. Held back this way the writer decides as if its clock
// were a little behind, until the booking's expiry is on record, or the
// pool's time has passed the deadline anyway (then every booking operation
// finds the part lapsed).
func (p *Pool) SingleTimeAt(now time.Time) time.Time {
	now = p.TimeAt(now)
	p.walkLapsed(now, func(r *Reservation) {
		if r.Booking != "" && r.ExpiresAt.After(p.UpdatedAt) && !now.Before(r.ExpiresAt) {
			now = r.ExpiresAt.Add(-time.Nanosecond)
		}
	})
	return now
}

// NextDeadline returns the earliest deadline of a live hold, and false if
// there is none: when the sweeper should look at the pool next.
func (p *Pool) NextDeadline() (time.Time, bool) {
	if len(p.deadlines) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, p.deadlines[0].at).UTC(), true // the top is kept live
}

// TimeAt returns the instant a decision taken at now is taken at: now, or
// the time of the latest event the pool has recorded if that is later.
//
// Writers' clocks disagree (two instances, an NTP step). If a writer whose
// clock is ahead let a lapsed hold's units go to another customer, a writer
// whose clock is behind must not then confirm that hold as live: deciding
// at a time before what the pool has recorded could overbook it. Taking the
// later of the two makes the pool's own recorded time monotonic, so a lapse
// any writer relied on holds for every writer after it.
func (p *Pool) TimeAt(now time.Time) time.Time {
	now = now.UTC()
	if now.Before(p.UpdatedAt) {
		return p.UpdatedAt
	}
	return now
}

// Evolve applies one event to the pool in place and stamps it with the
// stream sequence seq. A seq of 0 applies the event without stamping, for
// deciding the rest of a batch before the append is acknowledged; Stamp
// then sets the sequences; until it has, a ChangePool with IfVersion is
// refused, since the version it names is about to be superseded. Evolve
// never fails: events are facts.
func (p *Pool) Evolve(e Event, seq uint64) {
	p.memo = lapseMemo{}
	at := EventTime(e)
	// fresh is the reservation this call made or copied, so not yet seen by
	// any clone: stamping it below changes it in place.
	var fresh *Reservation
	switch e := e.(type) {
	case PoolDefined:
		p.ID, p.Region, p.Kind = e.Pool, e.Region, e.Kind
		p.StartsAt, p.EndsAt = e.StartsAt, e.EndsAt
		p.Capacity, p.Overbook = e.Capacity, e.Overbook
		p.Status = Open
		p.definedCapacity, p.definedOverbook, p.definedAt = e.Capacity, e.Overbook, e.DefinedAt
	case CapacityChanged:
		p.Capacity = e.To
	case OverbookChanged:
		p.Overbook = e.To
	case PoolClosed:
		p.Status = Closed
	case PoolReopened:
		p.Status = Open
	case Held:
		if p.Reservations == nil {
			p.Reservations = make(map[string]*Reservation)
		}
		old := p.Reservations[e.ReservationID]
		if old != nil {
			p.count(old, -1) // a history Decide never writes; keep the counts true
		}
		fresh = &Reservation{
			ID: e.ReservationID, Quantity: e.Quantity, TTL: e.TTL, Status: StatusHeld,
			HeldAt: e.At, ExpiresAt: e.ExpiresAt, UpdatedAt: e.At, Booking: e.Booking, Items: e.Items,
		}
		p.Reservations[e.ReservationID] = fresh
		p.heldUnits += e.Quantity
		if old == nil || old.Status != StatusHeld || !old.ExpiresAt.Equal(e.ExpiresAt) {
			heap.Push(&p.deadlines, deadline{at: e.ExpiresAt.UnixNano(), id: e.ReservationID})
		}
	case Confirmed:
		if r := p.Reservations[e.ReservationID]; r != nil && r.Status == StatusHeld && e.Quantity > 0 && e.Quantity < r.Quantity {
			// A partial confirmation: the units not confirmed go back in
			// the same event.
			p.count(r, -1)
			fresh = p.edit(e.ReservationID, nil)
			fresh.HeldQuantity, fresh.Quantity = r.Quantity, e.Quantity
			p.count(fresh, +1)
		}
		fresh = p.moveReservation(e.ReservationID, StatusConfirmed, at, fresh)
	case Extended:
		if r := p.Reservations[e.ReservationID]; r != nil && r.Status == StatusHeld {
			if !r.ExpiresAt.Equal(e.ExpiresAt) {
				heap.Push(&p.deadlines, deadline{at: e.ExpiresAt.UnixNano(), id: e.ReservationID})
			}
			fresh = p.edit(e.ReservationID, nil)
			fresh.ExpiresAt, fresh.UpdatedAt = e.ExpiresAt, at
		}
	case Released:
		fresh = p.moveReservation(e.ReservationID, StatusReleased, at, nil)
	case Expired:
		fresh = p.moveReservation(e.ReservationID, StatusExpired, at, nil)
	}
	p.trimDeadlines()
	if at.After(p.UpdatedAt) {
		p.UpdatedAt = at // the pool's clock never goes back (see TimeAt)
	}
	p.retireFinished()
	if seq == 0 {
		p.unstamped++
		return
	}
	p.stamp(e, seq, fresh)
}

// Stamp records that e, evolved earlier with seq 0, is stored at stream
// sequence seq: the pool's version and that of the reservation e concerns.
// A seq of 0 does nothing.
func (p *Pool) Stamp(e Event, seq uint64) {
	if seq == 0 {
		return
	}
	if p.unstamped > 0 {
		p.unstamped--
	}
	p.stamp(e, seq, nil)
}

// stamp sets the pool's version and that of the reservation e concerns;
// fresh, if not nil, is a reservation Evolve has just made or copied.
func (p *Pool) stamp(e Event, seq uint64, fresh *Reservation) {
	p.Version = seq
	if id := ReservationID(e); id != "" {
		if r := p.edit(id, fresh); r != nil {
			r.Version = seq
		}
	}
}

// edit returns reservation id ready to be changed: fresh if that is the
// one in the map (made or copied by this Evolve, seen by no clone yet),
// otherwise a copy that replaces it in the map. A *Reservation in
// p.Reservations is never changed in place: a clone (a snapshot being
// encoded on another goroutine) may share it. Nil if there is none.
func (p *Pool) edit(id string, fresh *Reservation) *Reservation {
	r := p.Reservations[id]
	if r == nil || r == fresh {
		return r
	}
	c := *r
	p.Reservations[id] = &c
	return &c
}

// moveReservation changes a reservation's status and keeps the unit counts
// in step, and returns the reservation as changed (see edit for fresh).
// Unknown ids are ignored: replaying a history never fails.
func (p *Pool) moveReservation(id string, to ReservationStatus, at time.Time, fresh *Reservation) *Reservation {
	r := p.Reservations[id]
	if r == nil || r.Status == to {
		return fresh
	}
	p.count(r, -1)
	r = p.edit(id, fresh)
	r.Status, r.UpdatedAt = to, at
	p.count(r, +1)
	if to == StatusReleased || to == StatusExpired {
		p.noteFinished(id, at)
	}
	return r
}

func (p *Pool) count(r *Reservation, sign int) {
	switch r.Status {
	case StatusHeld:
		p.heldUnits += sign * r.Quantity
	case StatusConfirmed:
		p.confirmedUnits += sign * r.Quantity
	}
}

// ReservationID returns the reservation an event concerns, or "".
func ReservationID(e Event) string {
	switch e := e.(type) {
	case Held:
		return e.ReservationID
	case Confirmed:
		return e.ReservationID
	case Released:
		return e.ReservationID
	case Expired:
		return e.ReservationID
	case Extended:
		return e.ReservationID
	}
	return ""
}

// Clone returns a copy of the pool that shares its reservations: Evolve
// never changes a *Reservation in place (it puts a changed copy in the
// map), so what either pool does later is never seen by the other. The
// copy costs a copy of the map of pointers and of the deadline and
// retirement indexes, not one allocation per reservation: the writer takes
// it on its own goroutine for every snapshot of a pool with hundreds of
// thousands of reservations.
func (p *Pool) Clone() *Pool {
	c := *p
	c.memo = lapseMemo{}
	c.deadlines = slices.Clone(p.deadlines)
	c.finished, c.finishedHead = slices.Clone(p.finished[p.finishedHead:]), 0
	c.retired = p.retired.clone()
	c.Reservations = nil
	if len(p.Reservations) > 0 {
		c.Reservations = maps.Clone(p.Reservations)
	}
	return &c
}

// Recount recomputes the pool's derived totals and deadline index from its
// reservations, for a pool assembled field by field (a read model's
// checkpoint), as UnmarshalSnapshot does for a snapshot. It fails on a nil
// reservation.
func (p *Pool) Recount() error {
	p.heldUnits, p.confirmedUnits, p.unstamped, p.memo = 0, 0, 0, lapseMemo{}
	for _, r := range p.Reservations {
		if r == nil {
			return Errorf(EINVALID, "pool %s: null reservation", p.ID)
		}
		p.count(r, +1)
	}
	p.rebuildDeadlines()
	p.rebuildFinished()
	return nil
}
