package capacity

import (
	"time"
)

// The rules, in the order Decide applies them:
//
//   - A pool must be defined before anything else happens to it. Defining it
//     again with the same definition changes nothing; with another, conflict.
//   - A hold needs an open pool whose window has not ended, and must fit:
//     held + confirmed + quantity <= capacity + overbook, where holds past
//     their deadline no longer count (decisions take now).
//   - A reservation id names one request. The same hold again (same quantity
//     and TTL) returns the first result whatever became of it; the same id
//     with other content is a conflict.
//   - Confirm turns a live hold into a booking; a lapsed hold can no longer
//     be confirmed. Confirming twice changes nothing.
//   - Confirm may name fewer units than held: those are confirmed and the
//     rest given back in the same event. Confirming again with the same
//     quantity (or none) changes nothing; with another, conflict.
//   - Extend gives a live hold a new deadline, now + ttl, if that is later
//     than its deadline (it never shortens one); a lapsed hold cannot be
//     extended, nor a confirmed or released reservation.
//   - A booking's part in a pool is an ordinary reservation whose id is the
//     booking's, but it moves only with the booking (booking.go): the
//     single-pool Confirm, Release, Extend and Hold refuse it as a
//     conflict, and the sweeper's Expire leaves it to ExpireBooking.
//   - Release gives back a held or confirmed reservation's units; releasing
//     twice, or releasing a lapsed hold, changes nothing.
//   - Planners may cut capacity (or the overbooking allowance) below what is
//     booked: bookings are honoured, new holds refused until it fits again,
//     the pool reads as over capacity.
//   - Time never runs backwards for a pool: a decision is taken at the later
//     of the writer's clock and the pool's latest recorded event, so a lapse
//     one writer relied on (its units given to another hold) is a lapse for
//     every writer after it, whatever their clocks say.
//   - An If-Match version that is not the pool's version refuses a change,
//     and so does any If-Match while events evolved with seq 0 await their
//     sequence (they will move the version on).

// Limits on command values.
const (
	MaxIDLength = 64
	MaxQuantity = 1_000_000
	MaxCapacity = 1_000_000_000
	MinTTL      = time.Second
	MaxTTL      = 7 * 24 * time.Hour
	DefaultTTL  = 10 * time.Minute
)

// Command is a request to change a pool. Decide turns it into events.
type Command interface {
	// Validate checks the command on its own, without any state.
	Validate() error
}

// DefinePool creates a pool.
type DefinePool struct {
	Pool     string
	Region   string
	Kind     string
	StartsAt time.Time
	EndsAt   time.Time
	Capacity int
	Overbook int
}

// ChangePool reshapes a pool: a new capacity, a new overbooking allowance,
// a new status, or several at once. IfVersion, when set, must equal the
// pool's version.
type ChangePool struct {
	Capacity  *int
	Overbook  *int
	Status    Status
	IfVersion *uint64
}

// Hold reserves Quantity units for TTL.
type Hold struct {
	ReservationID string
	Quantity      int
	TTL           time.Duration
}

// Confirm turns a hold into a booking. Quantity, when set, confirms that
// many of the units held (1 <= Quantity <= held) and gives the rest back in
// the same event; 0 confirms them all.
type Confirm struct {
	ReservationID string
	Quantity      int
}

// Extend gives a live hold a new deadline: now + TTL.
type Extend struct {
	ReservationID string
	TTL           time.Duration
}

// Release gives a reservation's units back.
type Release struct {
	ReservationID string
}

// Expire writes Expired for every hold whose deadline has passed.
type Expire struct{}

// Read changes nothing; it exists so a strongly consistent read can queue
// behind the writes of a pool like any other command.
type Read struct{}

// ValidID reports whether s is a valid pool, reservation, region or kind id:
// 1 to 64 characters of [A-Za-z0-9_-].
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func checkID(what, s string) error {
	if !ValidID(s) {
		return Errorf(EINVALID, "%s must be 1-%d characters of [A-Za-z0-9_-]", what, MaxIDLength)
	}
	return nil
}

// Validate implements Command.
func (c DefinePool) Validate() error {
	for _, f := range []struct{ name, value string }{{"pool id", c.Pool}, {"region", c.Region}, {"kind", c.Kind}} {
		if err := checkID(f.name, f.value); err != nil {
			return err
		}
	}
	switch {
	case c.StartsAt.IsZero() || c.EndsAt.IsZero():
		return Errorf(EINVALID, "starts_at and ends_at are required")
	case !c.EndsAt.After(c.StartsAt):
		return Errorf(EINVALID, "ends_at must be after starts_at")
	case c.Capacity < 0 || c.Capacity > MaxCapacity:
		return Errorf(EINVALID, "capacity must be between 0 and %d", MaxCapacity)
	case c.Overbook < 0 || c.Overbook > MaxCapacity:
		return Errorf(EINVALID, "overbook must be between 0 and %d", MaxCapacity)
	}
	return nil
}

// Validate implements Command.
func (c ChangePool) Validate() error {
	if c.Capacity == nil && c.Overbook == nil && c.Status == "" {
		return Errorf(EINVALID, "nothing to change: give capacity, overbook and/or status")
	}
	if c.Capacity != nil && (*c.Capacity < 0 || *c.Capacity > MaxCapacity) {
		return Errorf(EINVALID, "capacity must be between 0 and %d", MaxCapacity)
	}
	if c.Overbook != nil && (*c.Overbook < 0 || *c.Overbook > MaxCapacity) {
		return Errorf(EINVALID, "overbook must be between 0 and %d", MaxCapacity)
	}
	if c.Status != "" && c.Status != Open && c.Status != Closed {
		return Errorf(EINVALID, "status must be %q or %q", Open, Closed)
	}
	return nil
}

// Validate implements Command.
func (c Hold) Validate() error {
	if err := checkID("reservation_id", c.ReservationID); err != nil {
		return err
	}
	if c.Quantity < 1 || c.Quantity > MaxQuantity {
		return Errorf(EINVALID, "quantity must be between 1 and %d", MaxQuantity)
	}
	return checkTTL(c.TTL)
}

// Validate implements Command.
func (c Confirm) Validate() error {
	if c.Quantity < 0 || c.Quantity > MaxQuantity {
		return Errorf(EINVALID, "quantity must be between 1 and %d", MaxQuantity)
	}
	return checkID("reservation id", c.ReservationID)
}

// Validate implements Command.
func (c Extend) Validate() error {
	if err := checkID("reservation id", c.ReservationID); err != nil {
		return err
	}
	return checkTTL(c.TTL)
}

func checkTTL(ttl time.Duration) error {
	if ttl < MinTTL || ttl > MaxTTL {
		return Errorf(EINVALID, "ttl must be between %s and %s", MinTTL, MaxTTL)
	}
	return nil
}

// Validate implements Command.
func (c Release) Validate() error { return checkID("reservation id", c.ReservationID) }

// Validate implements Command.
func (Expire) Validate() error { return nil }

// Validate implements Command.
func (Read) Validate() error { return nil }

// Decide returns the events that carrying out cmd on p at now would record,
// or the reason it is refused. It never changes p's state (it may fill the
// cache of lapsed units, see lapseMemo). No events and no error means the
// command is already satisfied (an idempotent repeat).
//
// now is taken in UTC and without its monotonic clock reading, so the
// events decided are exactly those a decoder will read back: a pool evolved
// live and one replayed from the store compare times alike. A now earlier
// than the pool's latest recorded event is moved up to it (Pool.TimeAt): a
// decision never goes back in time relative to what the pool has recorded.
func Decide(p *Pool, cmd Command, now time.Time) ([]Event, error) {
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	now = p.TimeAt(now)
	if _, ok := cmd.(DefinePool); !ok && !p.Defined() {
		switch cmd.(type) {
		case Expire, Read:
			return nil, nil
		}
		return nil, Errorf(ENOTFOUND, "pool not found")
	}
	switch c := cmd.(type) {
	case DefinePool:
		return decideDefine(p, c, now)
	case ChangePool:
		return decideChange(p, c, now)
	case Hold:
		return decideHold(p, c, now)
	case Confirm:
		return decideConfirm(p, c, now)
	case Release:
		return decideRelease(p, c, now)
	case Extend:
		return decideExtend(p, c, now)
	case Expire:
		var events []Event
		for _, id := range p.LapsedHolds(now) {
			if p.Reservations[id].Booking != "" {
				continue // expired with its booking's other parts (ExpireBooking)
			}
			events = append(events, Expired{ReservationID: id, At: now})
		}
		return events, nil
	case HoldBooking:
		return decideHoldBooking(p, c, now)
	case ConfirmBooking:
		return decideConfirmBooking(p, c, now)
	case ReleaseBooking:
		return decideReleaseBooking(p, c, now)
	case ExtendBooking:
		return decideExtendBooking(p, c, now)
	case ExpireBooking:
		return decideExpireBooking(p, c, now)
	case Read:
		return nil, nil
	}
	return nil, Errorf(EINVALID, "unknown command %T", cmd)
}

func decideDefine(p *Pool, c DefinePool, now time.Time) ([]Event, error) {
	if p.Defined() {
		d := p.Definition()
		if d.Pool == c.Pool && d.Region == c.Region && d.Kind == c.Kind && d.StartsAt.Equal(c.StartsAt) &&
			d.EndsAt.Equal(c.EndsAt) && d.Capacity == c.Capacity && d.Overbook == c.Overbook {
			return nil, nil
		}
		return nil, Errorf(ECONFLICT, "pool %s exists with a different definition", p.ID)
	}
	return []Event{PoolDefined{
		Pool: c.Pool, Region: c.Region, Kind: c.Kind, StartsAt: c.StartsAt.UTC(), EndsAt: c.EndsAt.UTC(),
		Capacity: c.Capacity, Overbook: c.Overbook, DefinedAt: now,
	}}, nil
}

func decideChange(p *Pool, c ChangePool, now time.Time) ([]Event, error) {
	if c.IfVersion != nil && *c.IfVersion != p.Version {
		return nil, Errorf(EPRECONDITION, "pool is at version %d, not %d", p.Version, *c.IfVersion)
	}
	if c.IfVersion != nil && p.unstamped > 0 {
		// An earlier command of the same batch changed the pool: the version
		// the caller saw will not be the pool's once the batch is stored.
		return nil, Errorf(EPRECONDITION, "pool is changing past version %d", p.Version)
	}
	var events []Event
	if c.Capacity != nil && *c.Capacity != p.Capacity {
		events = append(events, CapacityChanged{From: p.Capacity, To: *c.Capacity, At: now})
	}
	if c.Overbook != nil && *c.Overbook != p.Overbook {
		events = append(events, OverbookChanged{From: p.Overbook, To: *c.Overbook, At: now})
	}
	switch {
	case c.Status == Closed && p.Status == Open:
		events = append(events, PoolClosed{At: now})
	case c.Status == Open && p.Status == Closed:
		events = append(events, PoolReopened{At: now})
	}
	return events, nil
}

func decideHold(p *Pool, c Hold, now time.Time) ([]Event, error) {
	if r := p.Reservation(c.ReservationID); r != nil {
		if r.Booking == "" && r.heldQuantity() == c.Quantity && r.TTL == c.TTL {
			return nil, nil
		}
		return nil, Errorf(ECONFLICT, "reservation %s exists with a different quantity or ttl", c.ReservationID)
	}
	switch {
	case p.Status == Closed:
		return nil, Errorf(ECLOSED, "pool is closed")
	case !now.Before(p.EndsAt):
		return nil, Errorf(ECLOSED, "pool window ended at %s", p.EndsAt.Format(time.RFC3339))
	}
	// Fast path: lapsed holds only ever free units, so a hold that fits
	// counting them all never needs the scan for lapsed ones.
	if p.heldUnits+p.confirmedUnits+c.Quantity > p.Limit() && p.usedUnits(now)+c.Quantity > p.Limit() {
		return nil, Errorf(EINSUFFICIENT, "%d units requested, %d available", c.Quantity, max(0, p.Limit()-p.usedUnits(now)))
	}
	return []Event{Held{
		ReservationID: c.ReservationID, Quantity: c.Quantity, TTL: c.TTL, ExpiresAt: now.Add(c.TTL), At: now,
	}}, nil
}

// plainReservation returns the reservation a single-pool command concerns:
// not found, or a booking's part, which moves only with its booking's
// other parts (a conflict here).
func plainReservation(p *Pool, id string) (*Reservation, error) {
	r := p.Reservation(id)
	if r == nil {
		return nil, Errorf(ENOTFOUND, "reservation not found")
	}
	if r.Booking != "" {
		return nil, Errorf(ECONFLICT, "reservation %s is part of booking %s: use the booking", id, r.Booking)
	}
	return r, nil
}

func decideConfirm(p *Pool, c Confirm, now time.Time) ([]Event, error) {
	r, err := plainReservation(p, c.ReservationID)
	if err != nil {
		return nil, err
	}
	return confirmEvents(r, c.Quantity, "", now)
}

func confirmEvents(r *Reservation, quantity int, booking string, now time.Time) ([]Event, error) {
	switch r.StatusAt(now) {
	case StatusConfirmed:
		if quantity != 0 && quantity != r.Quantity {
			return nil, Errorf(ECONFLICT, "reservation was confirmed with %d units", r.Quantity)
		}
		return nil, nil
	case StatusExpired:
		return nil, Errorf(EEXPIRED, "hold expired at %s", r.ExpiresAt.Format(time.RFC3339))
	case StatusReleased:
		return nil, Errorf(ECONFLICT, "reservation was released")
	}
	if quantity > r.Quantity {
		return nil, Errorf(EINVALID, "quantity %d is more than the %d units held", quantity, r.Quantity)
	}
	if quantity == r.Quantity {
		quantity = 0 // all of them: the event as before v1.1
	}
	return []Event{Confirmed{ReservationID: r.ID, At: now, Quantity: quantity, Booking: booking}}, nil
}

func decideRelease(p *Pool, c Release, now time.Time) ([]Event, error) {
	r, err := plainReservation(p, c.ReservationID)
	if err != nil {
		return nil, err
	}
	return releaseEvents(r, "", now), nil
}

func releaseEvents(r *Reservation, booking string, now time.Time) []Event {
	switch r.StatusAt(now) {
	case StatusHeld, StatusConfirmed:
		return []Event{Released{ReservationID: r.ID, At: now, Booking: booking}}
	}
	return nil
}

func decideExtend(p *Pool, c Extend, now time.Time) ([]Event, error) {
	r, err := plainReservation(p, c.ReservationID)
	if err != nil {
		return nil, err
	}
	return extendEvents(p, r, c.TTL, now.Add(c.TTL), "", now)
}

func extendEvents(p *Pool, r *Reservation, ttl time.Duration, expiresAt time.Time, booking string, now time.Time) ([]Event, error) {
	switch r.StatusAt(now) {
	case StatusExpired:
		return nil, Errorf(EEXPIRED, "hold expired at %s", r.ExpiresAt.Format(time.RFC3339))
	case StatusConfirmed:
		return nil, Errorf(ECONFLICT, "reservation is confirmed: nothing to extend")
	case StatusReleased:
		return nil, Errorf(ECONFLICT, "reservation was released")
	}
	if !now.Before(p.EndsAt) {
		return nil, Errorf(ECLOSED, "pool window ended at %s", p.EndsAt.Format(time.RFC3339))
	}
	if !expiresAt.After(r.ExpiresAt) {
		// An extension never shortens a hold: it already lives that long.
		// (Deadlines only move later, so a pool's deadline heap never holds
		// two live entries for one hold.)
		return nil, nil
	}
	return []Event{Extended{ReservationID: r.ID, TTL: ttl, ExpiresAt: expiresAt, At: now, Booking: booking}}, nil
}
