package ui

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
)

// MaxBoardDays is the longest date range the board shows at once.
const MaxBoardDays = 31

// boardFilter selects the board's cells: a region and a kind ("" for all)
// and an inclusive range of UTC days.
type boardFilter struct {
	Region, Kind string
	From, To     time.Time // midnight UTC of the first and last day
}

// FromDay and ToDay are the range as form values (views.DayLayout).
func (f boardFilter) FromDay() string { return f.From.Format(views.DayLayout) }

// ToDay is the last day of the range as a form value.
func (f boardFilter) ToDay() string { return f.To.Format(views.DayLayout) }

// Query returns the filter as a query string.
func (f boardFilter) Query() string {
	q := url.Values{}
	if f.Region != "" {
		q.Set("region", f.Region)
	}
	if f.Kind != "" {
		q.Set("kind", f.Kind)
	}
	q.Set("from", f.FromDay())
	q.Set("to", f.ToDay())
	return q.Encode()
}

// Shift returns the board's URL with the filter's dates moved by days.
func (f boardFilter) Shift(days int) string {
	f.From, f.To = f.From.AddDate(0, 0, days), f.To.AddDate(0, 0, days)
	return "/?" + f.Query()
}

// Days is the number of days of the range.
func (f boardFilter) Days() int { return int(f.To.Sub(f.From).Hours()/24) + 1 }

// match reports whether the filter selects a cell.
func (f boardFilter) match(c views.Cell) bool {
	if (f.Region != "" && c.Region != f.Region) || (f.Kind != "" && c.Kind != f.Kind) {
		return false
	}
	return c.Day >= f.FromDay() && c.Day <= f.ToDay()
}

// today returns midnight UTC of now's day.
func today(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// parseBoardFilter reads the board's query: region, kind, from and to
// (YYYY-MM-DD, UTC). Unset dates default to the week from today. It returns
// a problem per bad field; the filter is then the default.
func parseBoardFilter(q url.Values, now time.Time) (boardFilter, map[string]string) {
	f := boardFilter{Region: q.Get("region"), Kind: q.Get("kind"), From: today(now)}
	f.To = f.From.AddDate(0, 0, 6)
	problems := make(map[string]string)
	for name, v := range map[string]string{"region": f.Region, "kind": f.Kind} {
		if v != "" && !capacity.ValidID(v) {
			problems[name] = "must be 1-64 characters of A-Z, a-z, 0-9, _ and -"
		}
	}
	from := f.From
	if s := q.Get("from"); s != "" {
		t, err := time.Parse(views.DayLayout, s)
		if err != nil {
			problems["from"] = "must be a date, YYYY-MM-DD"
		}
		from = t
	}
	to := from.AddDate(0, 0, 6)
	if s := q.Get("to"); s != "" {
		t, err := time.Parse(views.DayLayout, s)
		if err != nil {
			problems["to"] = "must be a date, YYYY-MM-DD"
		}
		to = t
	}
	if len(problems) == 0 {
		switch days := int(to.Sub(from).Hours()/24) + 1; {
		case days < 1:
			problems["to"] = "must be on or after the first day"
		case days > MaxBoardDays:
			problems["to"] = "the board shows at most 31 days at once"
		}
	}
	if len(problems) > 0 {
		return boardFilter{From: f.From, To: f.To}, problems
	}
	f.From, f.To = from, to
	return f, nil
}

// BoardPage is the board: the filter form and the heatmap grid.
type BoardPage struct {
	BasePage
	Filter boardFilter
	// Errors holds a problem per bad filter field.
	Errors map[string]string
	// Regions and Kinds are every region and kind on the board, for the
	// filter's choices.
	Regions, Kinds []string
	Grid           boardGrid
	// Position is the stream sequence the board reflects.
	Position uint64
	// Running is false when no board read model is wired.
	Running bool
	// Verify is capacityd verify's last verdict per region, if any.
	Verify []verdictLine
}

// verdictLine is one verdict as the board shows it.
type verdictLine struct {
	capacity.VerifyVerdict
	Age string // since the verdict, e.g. "12 s"
}

// age says a duration the way a status line does: seconds, minutes,
// hours, days.
func age(d time.Duration) string {
	switch d = max(d, 0); {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// StreamURL is the live feed of the board as filtered.
func (p BoardPage) StreamURL() string { return "/v1/board/stream?" + p.Filter.Query() }

// GridURL is the grid alone, as filtered.
func (p BoardPage) GridURL() string { return "/ui/board/grid?" + p.Filter.Query() }

// boardGrid is the heatmap: one table per region, a row per kind and time
// of day, a column per day.
type boardGrid struct {
	Days    []gridDay
	Regions []gridRegion
	Cells   int // cells with a pool
}

// gridDay is a column of the grid.
type gridDay struct {
	Day  string    // views.DayLayout
	Date time.Time // midnight UTC
}

// gridRegion is the table of one region.
type gridRegion struct {
	Region string
	Rows   []gridRow
}

// gridRow is one kind at one time of day, across the days.
type gridRow struct {
	Kind  string
	Time  string
	Cells []cellView // one per day; Pools == 0 where no pool starts then
}

// buildGrid lays the filtered cells out. Every slot that has a pool on
// some day gets a row, and every day of the range a column, so a cell that
// appears later on a known row updates in place.
func buildGrid(cells []views.Cell, f boardFilter) boardGrid {
	var g boardGrid
	for d := f.From; !d.After(f.To); d = d.AddDate(0, 0, 1) {
		g.Days = append(g.Days, gridDay{Day: d.Format(views.DayLayout), Date: d})
	}
	type rowKey struct{ region, kind, time string }
	rows := make(map[rowKey]map[string]views.Cell)
	for _, c := range cells {
		k := rowKey{c.Region, c.Kind, c.Slot.UTC().Format("15:04")}
		if rows[k] == nil {
			rows[k] = make(map[string]views.Cell)
		}
		rows[k][c.Day] = c
		g.Cells++
	}
	keys := make([]rowKey, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b rowKey) int {
		return cmp.Or(cmp.Compare(a.region, b.region), cmp.Compare(a.kind, b.kind), cmp.Compare(a.time, b.time))
	})
	for _, k := range keys {
		if n := len(g.Regions); n == 0 || g.Regions[n-1].Region != k.region {
			g.Regions = append(g.Regions, gridRegion{Region: k.region})
		}
		row := gridRow{Kind: k.kind, Time: k.time}
		for _, d := range g.Days {
			c, ok := rows[k][d.Day]
			if !ok {
				slot, _ := time.Parse("2006-01-02 15:04", d.Day+" "+k.time)
				c = views.Cell{Region: k.region, Kind: k.kind, Day: d.Day, Slot: slot}
			}
			row.Cells = append(row.Cells, viewOfCell(c))
		}
		last := &g.Regions[len(g.Regions)-1]
		last.Rows = append(last.Rows, row)
	}
	return g
}

// boardPage reads the board and builds its page for the request's filter.
func boardPage(r *http.Request, e *engine, board Board) (BoardPage, int) {
	p := BoardPage{BasePage: e.base("Capacity board", "board"), Running: board != nil}
	f, problems := parseBoardFilter(r.URL.Query(), e.now())
	p.Filter, p.Errors = f, problems
	status := http.StatusOK
	if len(problems) > 0 {
		status = http.StatusBadRequest
		p.Flash = &Flash{Kind: "error", Message: "The filter is not valid; showing this week instead. Fix the fields marked below."}
	}
	if board == nil {
		return p, status
	}
	all, pos := board.Cells("", "", "")
	p.Position = pos
	regions, kinds := map[string]bool{}, map[string]bool{}
	var cells []views.Cell
	for _, c := range all {
		regions[c.Region], kinds[c.Kind] = true, true
		if f.match(c) {
			cells = append(cells, c)
		}
	}
	if f.Region != "" {
		regions[f.Region] = true // keep the filter selectable when nothing matches it
	}
	if f.Kind != "" {
		kinds[f.Kind] = true
	}
	p.Regions, p.Kinds = sortedKeys(regions), sortedKeys(kinds)
	p.Grid = buildGrid(cells, f)
	return p, status
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// handleBoard serves the board page at /, with verify's last verdicts.
func handleBoard(e *engine, board Board, verdicts Verdicts) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, status := boardPage(r, e, board)
		if verdicts != nil {
			now := e.now()
			for _, v := range verdicts.Verdicts(r.Context()) {
				p.Verify = append(p.Verify, verdictLine{v, age(now.Sub(v.At))})
			}
		}
		e.render(w, r, status, viewBoard, p)
	}
}

// handleBoardGrid serves the grid alone, which board.js fetches when a
// cell it has no place for appears.
func handleBoardGrid(e *engine, board Board) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, status := boardPage(r, e, board)
		e.renderFragment(w, r, status, viewBoard, "grid", p)
	}
}
