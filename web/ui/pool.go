package ui

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/go-chi/chi/v5"
)

// Display limits of the pool page. The API's events route pages through
// any history.
const (
	maxEventRows       = 2000
	maxReservationRows = 1000
)

// PoolPage is one pool: figures, chart, reservations, audit trail and the
// forms that reshape it.
type PoolPage struct {
	BasePage
	Pool capacity.PoolView
	// Cell is the pool's utilisation, shown like a board cell.
	Cell  cellView
	Chart chart
	// Reservations are the pool's reservations, latest change first.
	Reservations      []reservationRow
	ReservationsTotal int
	// Events are the pool's history, newest first; EventsTotal counts
	// them all, of which at most maxEventRows are shown.
	Events      []eventRow
	EventsTotal int
	// Capacity is the capacity form as it is shown.
	Capacity capacityForm
	// BoardLink is the board filtered on the pool's region, kind and week.
	BoardLink string
}

// EventsTruncated reports whether only the newest events are shown.
func (p PoolPage) EventsTruncated() bool { return p.EventsTotal > len(p.Events) }

// ReservationsTruncated reports whether only some reservations are shown.
func (p PoolPage) ReservationsTruncated() bool { return p.ReservationsTotal > len(p.Reservations) }

// capacityForm is the change-capacity form: the value to show, the version
// the change is conditional on, and a problem with the value.
type capacityForm struct {
	Value   string
	Version uint64
	Error   string
}

// reservationRow is a reservation as the pool page lists it.
type reservationRow struct {
	ID        string
	Quantity  int
	Status    capacity.ReservationStatus
	HeldAt    time.Time
	ExpiresAt time.Time
	UpdatedAt time.Time
	Version   uint64
	// Booking names the booking the reservation is this pool's part of,
	// and OtherPools its other pools (empty for a plain hold).
	Booking    string
	OtherPools []string
}

// eventRow is one event of the audit trail.
type eventRow struct {
	Seq     uint64
	Time    time.Time
	Type    string
	Summary string
	JSON    string
}

// poolPage reads the pool (strongly consistent, from the write side) and
// its whole history, and builds the page.
func poolPage(ctx context.Context, e *engine, pools Pools, history History, id string) (PoolPage, error) {
	v, err := pools.Pool(ctx, id)
	if err != nil {
		return PoolPage{}, err
	}
	now := e.now()
	p := PoolPage{BasePage: e.base("Pool "+id, "pools"), Pool: v}
	p.Cell = viewOfCell(views.Cell{
		Region: v.Region, Kind: v.Kind, Day: v.StartsAt.UTC().Format(views.DayLayout), Slot: v.StartsAt, Pools: 1,
		Capacity: v.Capacity, Overbook: v.Overbook, Held: v.Held, Confirmed: v.Confirmed,
		ClosedPools: boolInt(v.Status == capacity.Closed), OverCapacityPools: boolInt(v.OverCapacity),
	})
	p.Capacity = capacityForm{Value: fmt.Sprint(v.Capacity), Version: v.Version}
	day := today(v.StartsAt)
	p.BoardLink = "/?" + boardFilter{Region: v.Region, Kind: v.Kind, From: day, To: day.AddDate(0, 0, 6)}.Query()

	var (
		pool   capacity.Pool
		events []eventRow
		series []chartPoint
	)
	for rec, err := range history.Read(ctx, id, 0) {
		if err != nil {
			return PoolPage{}, historyError(err)
		}
		pool.Evolve(rec.Event, rec.Seq)
		// The chart runs on the domain's clock (the one hold deadlines use);
		// the audit trail shows when the store took each event.
		at := capacity.EventTime(rec.Event)
		if at.IsZero() {
			at = rec.Stored
		}
		fig := pool.FiguresAt(at)
		series = append(series, chartPoint{At: at, Used: fig.Held + fig.Confirmed, Capacity: pool.Capacity})
		p.EventsTotal++
		events = append(events, eventOf(rec))
		if len(events) > 2*maxEventRows {
			events = slices.Delete(events, 0, len(events)-maxEventRows)
		}
	}
	if len(events) > maxEventRows {
		events = events[len(events)-maxEventRows:]
	}
	slices.Reverse(events)
	p.Events = events
	if len(series) > 0 {
		// The live figures, from the write side, close the series at now.
		series = append(series, chartPoint{At: now, Used: v.Held + v.Confirmed, Capacity: v.Capacity})
	}
	p.Chart = buildChart(series, v.Capacity+v.Overbook)
	p.Reservations, p.ReservationsTotal = reservationRows(&pool, now)
	return p, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// historyError keeps a history failure's code if it has one; anything else
// is the event store being unreachable.
func historyError(err error) error {
	if code := capacity.ErrorCode(err); code != capacity.EINTERNAL {
		return err
	}
	return fmt.Errorf("ui: reading history: %w", err)
}

// reservationRows lists a pool's reservations, latest change first.
func reservationRows(p *capacity.Pool, now time.Time) ([]reservationRow, int) {
	rows := make([]reservationRow, 0, len(p.Reservations))
	for _, r := range p.Reservations {
		row := reservationRow{
			ID: r.ID, Quantity: r.Quantity, Status: r.StatusAt(now), HeldAt: r.HeldAt,
			ExpiresAt: r.ExpiresAt, UpdatedAt: r.UpdatedAt, Version: r.Version, Booking: r.Booking,
		}
		for _, it := range r.Items {
			if it.Pool != p.ID {
				row.OtherPools = append(row.OtherPools, it.Pool)
			}
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b reservationRow) int {
		return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), cmp.Compare(a.ID, b.ID))
	})
	total := len(rows)
	if total > maxReservationRows {
		rows = rows[:maxReservationRows]
	}
	return rows, total
}

// eventOf describes one recorded event for the audit trail.
func eventOf(rec capacity.Recorded) eventRow {
	row := eventRow{Seq: rec.Seq, Time: rec.Stored, Type: rec.Event.EventType()}
	if data, err := capacity.Encode(rec.Event); err == nil {
		row.JSON = string(data)
	}
	switch e := rec.Event.(type) {
	case capacity.PoolDefined:
		row.Summary = fmt.Sprintf("defined in %s as %s, %s to %s UTC, capacity %d", e.Region, e.Kind,
			e.StartsAt.UTC().Format("2006-01-02 15:04"), e.EndsAt.UTC().Format("15:04"), e.Capacity)
		if e.Overbook > 0 {
			row.Summary += fmt.Sprintf(" (+%d overbooking)", e.Overbook)
		}
	case capacity.CapacityChanged:
		row.Summary = fmt.Sprintf("capacity %d → %d", e.From, e.To)
	case capacity.OverbookChanged:
		row.Summary = fmt.Sprintf("overbooking allowance %d → %d", e.From, e.To)
	case capacity.PoolClosed:
		row.Summary = "closed to new holds"
	case capacity.PoolReopened:
		row.Summary = "reopened"
	case capacity.Held:
		row.Summary = fmt.Sprintf("%s held %d until %s UTC (TTL %s)", e.ReservationID, e.Quantity,
			e.ExpiresAt.UTC().Format("15:04:05"), e.TTL)
		if e.Booking != "" {
			row.Summary += fmt.Sprintf(" for booking %s (%d pools)", e.Booking, len(e.Items))
		}
	case capacity.Confirmed:
		row.Summary = e.ReservationID + " confirmed"
		if e.Quantity > 0 {
			row.Summary = fmt.Sprintf("%s confirmed %d units, the rest given back", e.ReservationID, e.Quantity)
		}
	case capacity.Extended:
		row.Summary = fmt.Sprintf("%s extended until %s UTC", e.ReservationID, e.ExpiresAt.UTC().Format("15:04:05"))
	case capacity.Released:
		row.Summary = e.ReservationID + " released"
	case capacity.Expired:
		row.Summary = e.ReservationID + " expired unconfirmed"
	}
	return row
}

// poolFlash is the message shown after a redirect from an action.
func poolFlash(done string) *Flash {
	switch done {
	case "capacity":
		return &Flash{Kind: "ok", Message: "Capacity changed."}
	case "closed":
		return &Flash{Kind: "ok", Message: "Pool closed: it takes no new holds."}
	case "opened":
		return &Flash{Kind: "ok", Message: "Pool reopened: it takes holds again."}
	case "unchanged":
		return &Flash{Kind: "warn", Message: "Nothing to change: the pool already was as asked."}
	}
	return nil
}

// handlePool serves GET /ui/pools/{pool}.
func handlePool(e *engine, pools Pools, history History) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "pool")
		if !capacity.ValidID(id) {
			e.renderError(w, r, http.StatusNotFound, "There is no pool "+fmt.Sprintf("%q", id)+": pool ids are 1-64 characters of A-Z, a-z, 0-9, _ and -.", "/ui/pools")
			return
		}
		p, err := poolPage(r.Context(), e, pools, history, id)
		if err != nil {
			e.fail(w, r, err, "/ui/pools")
			return
		}
		p.Flash = poolFlash(r.URL.Query().Get("done"))
		e.render(w, r, http.StatusOK, viewPool, p)
	}
}

// poolURL is the page of a pool, with an optional action outcome.
func poolURL(id, done string) string {
	u := "/ui/pools/" + url.PathEscape(id)
	if done != "" {
		u += "?done=" + url.QueryEscape(done)
	}
	return u
}
