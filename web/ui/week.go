package ui

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
)

// Bounds of a week template.
const (
	weekDays         = 7
	maxWeekPools     = 5000
	weekWorkers      = 8 // pools defined at once by one submission
	maxWeekMinutes   = 24 * 60
	poolIDDayLayout  = "20060102"
	poolIDTimeLayout = "1504"
)

// weekForm is the week template form as submitted (or defaulted).
type weekForm struct {
	Regions, Kinds, Slots, Minutes, Capacity, Start string
}

// weekPlan is a valid week template: every region, kind and daily slot
// for seven days from Start.
type weekPlan struct {
	regions, kinds []string
	slots          []time.Duration // offsets from midnight UTC
	length         time.Duration
	capacity       int
	start          time.Time
}

// WeekPage is the week template form.
type WeekPage struct {
	BasePage
	Form   weekForm
	Errors map[string]string
}

// WeekDonePage reports what a week template created.
type WeekDonePage struct {
	BasePage
	Total, Created, Existing int
	// Conflicts are pools that exist with another definition: left as
	// they are.
	Conflicts []string
	// Failures are pools that could not be defined; submitting again
	// retries them.
	Failures  []weekFailure
	BoardLink string
	Start     string
}

// weekFailure is a pool a week template could not define.
type weekFailure struct {
	ID, Message string
}

// weekPoolID is the deterministic id of a template's pool, so submitting
// the same template again finds the pools it made: <region>-<kind>-<yyyymmdd>-<hhmm>.
func weekPoolID(region, kind string, slot time.Time) string {
	slot = slot.UTC()
	return region + "-" + kind + "-" + slot.Format(poolIDDayLayout) + "-" + slot.Format(poolIDTimeLayout)
}

// splitList splits a list on commas and white space, dropping repeats.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// parseWeek validates the form, returning a problem per field.
func parseWeek(f weekForm) (weekPlan, map[string]string) {
	var p weekPlan
	problems := make(map[string]string)
	p.regions, p.kinds = splitList(f.Regions), splitList(f.Kinds)
	for field, list := range map[string][]string{"regions": p.regions, "kinds": p.kinds} {
		if len(list) == 0 {
			problems[field] = "give at least one, separated by commas"
		}
		for _, v := range list {
			if !capacity.ValidID(v) {
				problems[field] = fmt.Sprintf("%q: use 1-64 characters of A-Z, a-z, 0-9, _ and -", v)
				break
			}
		}
	}
	longest := func(list []string) (n int) {
		for _, v := range list {
			n = max(n, len(v))
		}
		return n
	}
	if problems["regions"] == "" && problems["kinds"] == "" && longest(p.regions)+longest(p.kinds)+len("--yyyymmdd-hhmm") > capacity.MaxIDLength {
		problems["kinds"] = fmt.Sprintf("region and kind together must be at most %d characters, to fit in pool ids", capacity.MaxIDLength-len("--yyyymmdd-hhmm"))
	}
	for _, s := range splitList(f.Slots) {
		t, err := time.Parse("15:04", s)
		if err != nil {
			problems["slots"] = fmt.Sprintf("%q: give start times as HH:MM (24-hour, UTC)", s)
			break
		}
		p.slots = append(p.slots, time.Duration(t.Hour())*time.Hour+time.Duration(t.Minute())*time.Minute)
	}
	if len(p.slots) == 0 && problems["slots"] == "" {
		problems["slots"] = "give at least one start time, e.g. 08:00, 10:00"
	}
	slices.Sort(p.slots)
	minutes, err := strconv.Atoi(strings.TrimSpace(f.Minutes))
	if err != nil || minutes < 1 || minutes > maxWeekMinutes {
		problems["minutes"] = fmt.Sprintf("a whole number of minutes from 1 to %d", maxWeekMinutes)
	}
	p.length = time.Duration(minutes) * time.Minute
	if p.capacity, err = strconv.Atoi(strings.TrimSpace(f.Capacity)); err != nil || p.capacity < 0 || p.capacity > capacity.MaxCapacity {
		problems["capacity"] = fmt.Sprintf("a whole number from 0 to %d", capacity.MaxCapacity)
	}
	if p.start, err = time.Parse(views.DayLayout, strings.TrimSpace(f.Start)); err != nil {
		problems["start"] = "a date, YYYY-MM-DD"
	}
	if n := len(p.regions) * len(p.kinds) * len(p.slots) * weekDays; len(problems) == 0 && n > maxWeekPools {
		problems["slots"] = fmt.Sprintf("that makes %d pools; one template makes at most %d", n, maxWeekPools)
	}
	return p, problems
}

// commands returns the definitions of every pool of the plan, in order of
// day, slot, region and kind.
func (p weekPlan) commands() []capacity.DefinePool {
	var cmds []capacity.DefinePool
	for d := range weekDays {
		day := p.start.AddDate(0, 0, d)
		for _, offset := range p.slots {
			starts := day.Add(offset)
			for _, region := range p.regions {
				for _, kind := range p.kinds {
					cmds = append(cmds, capacity.DefinePool{
						Pool: weekPoolID(region, kind, starts), Region: region, Kind: kind,
						StartsAt: starts, EndsAt: starts.Add(p.length), Capacity: p.capacity,
					})
				}
			}
		}
	}
	return cmds
}

// defaultWeekForm is the form as first shown.
func defaultWeekForm(now time.Time) weekForm {
	return weekForm{
		Kinds: "delivery", Slots: "08:00, 10:00, 12:00, 14:00, 16:00, 18:00", Minutes: "120", Capacity: "20",
		Start: today(now).Format(views.DayLayout),
	}
}

// handleWeekForm serves GET /ui/week.
func handleWeekForm(e *engine) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := WeekPage{BasePage: e.base("Create a week of pools", "week"), Form: defaultWeekForm(e.now())}
		e.render(w, r, http.StatusOK, viewWeek, p)
	}
}

// handleWeekCreate serves POST /ui/week: it defines every pool of the
// template. Pool ids are deterministic and defining an identical pool
// again writes nothing, so submitting twice creates nothing new: the
// second answer counts every pool as existing.
func handleWeekCreate(e *engine, pools Pools) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := parseForm(w, r); err != nil {
			e.fail(w, r, err, "/ui/week")
			return
		}
		form := weekForm{
			Regions: r.PostForm.Get("regions"), Kinds: r.PostForm.Get("kinds"), Slots: r.PostForm.Get("slots"),
			Minutes: r.PostForm.Get("minutes"), Capacity: r.PostForm.Get("capacity"), Start: r.PostForm.Get("start"),
		}
		plan, problems := parseWeek(form)
		if len(problems) > 0 {
			p := WeekPage{BasePage: e.base("Create a week of pools", "week"), Form: form, Errors: problems}
			p.Flash = &Flash{Kind: "error", Message: "Nothing was created: fix the fields marked below."}
			e.render(w, r, http.StatusBadRequest, viewWeek, p)
			return
		}
		done := defineWeek(r, e, pools, plan.commands())
		done.BasePage = e.base("Week created", "week")
		done.Start = plan.start.Format(views.DayLayout)
		filter := boardFilter{From: plan.start, To: plan.start.AddDate(0, 0, weekDays-1)}
		if len(plan.regions) == 1 {
			filter.Region = plan.regions[0]
		}
		if len(plan.kinds) == 1 {
			filter.Kind = plan.kinds[0]
		}
		done.BoardLink = "/?" + filter.Query()
		status := http.StatusOK
		if len(done.Failures) > 0 {
			status = http.StatusServiceUnavailable
			done.Title = "Week partly created"
			done.Flash = &Flash{Kind: "error", Message: fmt.Sprintf("%d pools could not be created; submit the form again to retry them (pools already made are kept).", len(done.Failures))}
		}
		e.render(w, r, status, viewWeekDone, done)
	}
}

// defineWeek defines the pools, a few at once, and counts the outcomes.
// Every worker is done before it returns.
func defineWeek(r *http.Request, e *engine, pools Pools, cmds []capacity.DefinePool) WeekDonePage {
	type outcome struct {
		id      string
		written bool
		err     error
	}
	outcomes := make([]outcome, len(cmds))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(weekWorkers, len(cmds)) {
		wg.Go(func() {
			for i := range next {
				res, err := pools.Execute(r.Context(), cmds[i].Pool, cmds[i])
				outcomes[i] = outcome{id: cmds[i].Pool, written: res.Written, err: err}
			}
		})
	}
	for i := range cmds {
		next <- i
	}
	close(next)
	wg.Wait()

	done := WeekDonePage{Total: len(cmds)}
	for _, o := range outcomes {
		switch code := capacity.ErrorCode(o.err); {
		case o.err == nil && o.written:
			done.Created++
		case o.err == nil:
			done.Existing++
		case code == capacity.ECONFLICT:
			done.Conflicts = append(done.Conflicts, o.id)
		default:
			_, msg := e.messageOf(r, o.err)
			done.Failures = append(done.Failures, weekFailure{ID: o.id, Message: msg})
		}
	}
	return done
}
