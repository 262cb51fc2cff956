package ui

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
)

// poolListLimit is the most pools one page of the list shows.
const poolListLimit = 200

// PoolListPage lists pools from the availability read model.
type PoolListPage struct {
	BasePage
	Region, Kind, From, To, ID string
	Errors                     map[string]string
	Rows                       []poolRow
	// Next is the URL of the next page, "" on the last.
	Next     string
	Position uint64
	Running  bool
}

// poolRow is a pool in the list, with its utilisation shown as on the board.
type poolRow struct {
	capacity.PoolView
	Cell cellView
}

// handlePoolList serves GET /ui/pools: pools by region, kind and start
// date; ?id= jumps to one pool; ?slot= (a board cell's) goes straight to
// the pool when only one starts then.
func handlePoolList(e *engine, availability Availability) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if id := strings.TrimSpace(q.Get("id")); id != "" && capacity.ValidID(id) {
			http.Redirect(w, r, poolURL(id, ""), http.StatusSeeOther)
			return
		}
		p := PoolListPage{
			BasePage: e.base("Pools", "pools"), Region: q.Get("region"), Kind: q.Get("kind"),
			From: q.Get("from"), To: q.Get("to"), ID: q.Get("id"), Running: availability != nil,
		}
		aq, problems := poolListQuery(q)
		if p.ID != "" {
			problems["id"] = "pool ids are 1-64 characters of A-Z, a-z, 0-9, _ and -"
		}
		if len(problems) > 0 {
			p.Errors = problems
			p.Flash = &Flash{Kind: "error", Message: "Some fields are not valid; fix the ones marked below."}
			e.render(w, r, http.StatusBadRequest, viewPools, p)
			return
		}
		if availability == nil {
			e.render(w, r, http.StatusServiceUnavailable, viewPools, p)
			return
		}
		page, err := availability.Query(aq, e.now())
		if err != nil {
			e.fail(w, r, err, "/ui/pools")
			return
		}
		if q.Get("slot") != "" && aq.Cursor == "" && page.Next == "" && len(page.Pools) == 1 {
			http.Redirect(w, r, poolURL(page.Pools[0].ID, ""), http.StatusSeeOther)
			return
		}
		p.Position = page.Position
		for _, v := range page.Pools {
			p.Rows = append(p.Rows, poolRow{PoolView: v, Cell: viewOfCell(views.Cell{
				Region: v.Region, Kind: v.Kind, Slot: v.StartsAt, Pools: 1, Capacity: v.Capacity,
				Held: v.Held, Confirmed: v.Confirmed, ClosedPools: boolInt(v.Status == capacity.Closed),
				OverCapacityPools: boolInt(v.OverCapacity),
			})})
		}
		if page.Next != "" {
			next := url.Values{}
			for k, v := range q {
				next[k] = v
			}
			next.Set("cursor", page.Next)
			p.Next = "/ui/pools?" + next.Encode()
		}
		e.render(w, r, http.StatusOK, viewPools, p)
	}
}

// poolListQuery reads the list's filter: region, kind, from and to dates
// (to inclusive), or one slot (RFC 3339).
func poolListQuery(q url.Values) (views.AvailabilityQuery, map[string]string) {
	aq := views.AvailabilityQuery{Region: q.Get("region"), Kind: q.Get("kind"), Limit: poolListLimit, Cursor: q.Get("cursor")}
	problems := make(map[string]string)
	for name, v := range map[string]string{"region": aq.Region, "kind": aq.Kind} {
		if v != "" && !capacity.ValidID(v) {
			problems[name] = "must be 1-64 characters of A-Z, a-z, 0-9, _ and -"
		}
	}
	if s := q.Get("from"); s != "" {
		t, err := time.Parse(views.DayLayout, s)
		if err != nil {
			problems["from"] = "must be a date, YYYY-MM-DD"
		}
		aq.From = t
	}
	if s := q.Get("to"); s != "" {
		t, err := time.Parse(views.DayLayout, s)
		if err != nil {
			problems["to"] = "must be a date, YYYY-MM-DD"
		}
		aq.To = t.AddDate(0, 0, 1)
	}
	if s := q.Get("slot"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			problems["slot"] = "must be an RFC 3339 time"
		}
		aq.From, aq.To = t, t.Add(time.Second)
	}
	if len(aq.Cursor) > 1024 {
		problems["cursor"] = "too long"
	}
	return aq, problems
}
