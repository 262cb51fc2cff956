package ui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/rs/zerolog"
)

func TestBoardPage(t *testing.T) {
	s := newStack(t)
	tue := epoch.Add(24*time.Hour + 2*time.Hour) // Tuesday 08:00
	s.define(t, "north-delivery-a", "north", "delivery", tue, 4)
	s.define(t, "north-picking-a", "north", "picking", tue, 10)
	s.define(t, "south-delivery-a", "south", "delivery", tue, 2)
	s.define(t, "later", "north", "delivery", tue.AddDate(0, 0, 14), 5)
	s.hold(t, "north-delivery-a", "r1", 2)
	s.hold(t, "south-delivery-a", "r2", 2)
	s.change(t, "south-delivery-a", capacity.ChangePool{Status: capacity.Closed})
	v := s.change(t, "north-picking-a", capacity.ChangePool{Capacity: new(0)})
	s.hold(t, "north-delivery-a", "r3", 1)
	v = s.change(t, "north-delivery-a", capacity.ChangePool{Capacity: new(2)}) // 3 booked on 2: over
	s.caughtUp(t, v.Version)

	res := s.get(t, "/")
	wantStatus(t, res, http.StatusOK)
	wantBody(t, res,
		`<h2 id="r-north">north</h2>`, `<h2 id="r-south">south</h2>`,
		"north delivery 2030-03-05 08:00 UTC: 150% used, 3 held and 0 confirmed of capacity 2 (over capacity)",
		`class="cell over"`, "150%", "3 / 2",
		"south delivery 2030-03-05 08:00 UTC: 100% used", "closed", `class="cell u5 closed"`,
		"no capacity", `<time datetime="2030-03-04">Mon 4 Mar</time>`, `<time datetime="2030-03-10">Sun 10 Mar</time>`,
		`data-stream="/v1/board/stream?from=2030-03-04&amp;to=2030-03-10"`,
	)
	wantNoBody(t, res, "2030-03-19") // outside this week
	if got := res.Header.Get("Content-Security-Policy"); !strings.Contains(got, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", got)
	}

	t.Run("filters", func(t *testing.T) {
		res := s.get(t, "/?region=south&kind=delivery&from=2030-03-05&to=2030-03-05")
		wantStatus(t, res, http.StatusOK)
		wantBody(t, res, `<h2 id="r-south">south</h2>`, `<option value="south" selected>`)
		wantNoBody(t, res, `<h2 id="r-north">`, "Wed 6 Mar")
	})
	t.Run("later week", func(t *testing.T) {
		res := s.get(t, "/?from=2030-03-18&to=2030-03-24")
		wantStatus(t, res, http.StatusOK)
		wantBody(t, res, "north delivery 2030-03-19 08:00 UTC: 0% used")
	})
	t.Run("nothing in range", func(t *testing.T) {
		res := s.get(t, "/?region=west")
		wantStatus(t, res, http.StatusOK)
		wantBody(t, res, "No pools start in this range in west", `<option value="west" selected>`)
	})
	t.Run("grid fragment", func(t *testing.T) {
		res := s.get(t, "/ui/board/grid?region=north&from=2030-03-04&to=2030-03-10")
		wantStatus(t, res, http.StatusOK)
		if !strings.HasPrefix(res.Body, `<div id="grid"`) {
			t.Errorf("fragment starts %q", clip(res.Body)[:40])
		}
		wantNoBody(t, res, "<html", `<h2 id="r-south">`)
	})
	for _, tc := range []struct{ name, query, field string }{
		{"bad date", "from=tomorrow", `id="e-from"`},
		{"reversed range", "from=2030-03-10&to=2030-03-01", `id="e-to"`},
		{"too long", "from=2030-03-01&to=2030-06-01", "at most 31 days"},
		{"bad region", "region=no%20spaces", `id="e-region"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.get(t, "/?"+tc.query)
			wantStatus(t, res, http.StatusBadRequest)
			wantBody(t, res, `role="alert"`, "The filter is not valid", tc.field, `aria-invalid="true"`)
		})
	}
}

func TestBoardWithoutReadModel(t *testing.T) {
	s := newStack(t)
	u, err := New(Config{Pools: s.svc, History: s.events, Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := s.mount(u)
	res := serve(t, h, mustRequest(t, http.MethodGet, "/"))
	wantStatus(t, res, http.StatusOK)
	wantBody(t, res, "The board read model is not running")
	res = serve(t, h, mustRequest(t, http.MethodGet, "/v1/board/stream"))
	wantStatus(t, res, http.StatusServiceUnavailable)
	res = serve(t, h, mustRequest(t, http.MethodGet, "/ui/pools"))
	wantStatus(t, res, http.StatusServiceUnavailable)
	wantBody(t, res, "availability read model is not running")
}

func TestViewOfCell(t *testing.T) {
	slot := time.Date(2030, 3, 5, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name                string
		cell                views.Cell
		level, label, flags string
		percent             int
	}{
		{"empty", views.Cell{Pools: 1, Capacity: 8}, "u0", "0%", "", 0},
		{"a little", views.Cell{Pools: 1, Capacity: 8, Held: 1}, "u1", "13%", "", 13},
		{"half", views.Cell{Pools: 1, Capacity: 8, Held: 2, Confirmed: 2}, "u3", "50%", "", 50},
		{"most", views.Cell{Pools: 1, Capacity: 8, Confirmed: 7}, "u4", "88%", "", 88},
		{"full", views.Cell{Pools: 1, Capacity: 8, Confirmed: 8}, "u5", "100%", "", 100},
		{"over", views.Cell{Pools: 1, Capacity: 8, Confirmed: 9, OverCapacityPools: 1}, "over", "113%", "over capacity", 113},
		{"closed", views.Cell{Pools: 2, Capacity: 8, ClosedPools: 2}, "u0", "0%", "closed", 0},
		{"no capacity", views.Cell{Pools: 1}, "none", "no capacity", "", 0},
		{"cut to zero", views.Cell{Pools: 1, Held: 1}, "over", "over", "over capacity", 100},
		{"gone", views.Cell{}, "gone", "no pool", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cell.Region, tc.cell.Kind, tc.cell.Slot, tc.cell.Day = "north", "delivery", slot, "2030-03-05"
			v := viewOfCell(tc.cell)
			if v.Level != tc.level || v.Label != tc.label || v.Flags != tc.flags || v.Percent != tc.percent {
				t.Errorf("level, label, flags, percent = %q, %q, %q, %d; want %q, %q, %q, %d",
					v.Level, v.Label, v.Flags, v.Percent, tc.level, tc.label, tc.flags, tc.percent)
			}
			if got, want := v.Key, "north|delivery|"+itoa(slot.Unix()); got != want {
				t.Errorf("key = %q, want %q", got, want)
			}
		})
	}
}

// verdictList is a fixed list of verify verdicts (Verdicts).
type verdictList []capacity.VerifyVerdict

func (l verdictList) Verdicts(context.Context) []capacity.VerifyVerdict { return l }

// TestBoardShowsVerifyVerdicts: the board lists verify's last verdict per
// region, how long ago, and what differed when it failed; without
// verdicts it shows no line.
func TestBoardShowsVerifyVerdicts(t *testing.T) {
	s := newStack(t)
	res := s.get(t, "/")
	wantStatus(t, res, http.StatusOK)
	wantNoBody(t, res, `id="verify"`)

	now := s.clock.Now()
	u, err := New(Config{
		Pools: s.svc, History: s.events, Board: s.board, Availability: s.avail,
		Logger: zerolog.New(s.logs), Now: s.clock.Now,
		Verdicts: verdictList{
			{Region: "a", At: now.Add(-12 * time.Second), OK: true, Head: "b", HeadLastSeq: 701, Copies: 1, ReadModels: 2},
			{Region: "c", At: now.Add(-3 * time.Minute), OK: false, Head: "c", HeadLastSeq: 9, Copies: 1, ReadModels: 1,
				Summary: "read models of d differ: pool p1 at seq 7: held is 3 in the read model, 2 in a fresh fold of the stream"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	res = serve(t, s.mount(u), httptest.NewRequest(http.MethodGet, "/", nil))
	wantStatus(t, res, http.StatusOK)
	wantBody(t, res,
		`<li data-region="a" data-ok="true">verify: region a ok <time datetime="`, `12 s ago</time> (1 copies, 2 read models; head b at 701)</li>`,
		`<li data-region="c" data-ok="false" class="failed">verify: region c FAILED`, `3 min ago</time>`,
		`: read models of d differ: pool p1 at seq 7: held is 3 in the read model, 2 in a fresh fold of the stream</li>`)
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{-time.Second: "0 s", 59 * time.Second: "59 s", 90 * time.Second: "1 min", 3 * time.Hour: "3 h", 72 * time.Hour: "3 days"} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}
