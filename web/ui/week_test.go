package ui

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

func weekValues() url.Values {
	return url.Values{
		"regions": {"north, south"}, "kinds": {"delivery"}, "slots": {"08:00 18:30"},
		"minutes": {"90"}, "capacity": {"12"}, "start": {"2030-03-11"},
	}
}

func TestWeekCreate(t *testing.T) {
	s := newStack(t)
	// A pool the template would make, already defined differently: left alone.
	s.define(t, "south-delivery-20300312-0800", "south", "delivery", time.Date(2030, 3, 12, 8, 0, 0, 0, time.UTC), 3)

	res := s.get(t, "/ui/week")
	wantStatus(t, res, http.StatusOK)
	wantBody(t, res, `<label for="w-regions">Regions</label>`, `value="2030-03-04"`, "week.js")

	res = s.post(t, "/ui/week", weekValues())
	wantStatus(t, res, http.StatusOK)
	wantBody(t, res, `<dd id="week-total">28</dd>`, `<dd id="week-created">27</dd>`, `<dd id="week-existing">0</dd>`,
		`<dd id="week-conflicts">1</dd>`, `href="/ui/pools/south-delivery-20300312-0800"`,
		`href="/?from=2030-03-11&amp;kind=delivery&amp;to=2030-03-17"`)
	v, err := s.svc.Pool(context.Background(), "north-delivery-20300317-1830")
	if err != nil {
		t.Fatalf("last pool of the week: %v", err)
	}
	if got, want := v.StartsAt, time.Date(2030, 3, 17, 18, 30, 0, 0, time.UTC); !got.Equal(want) || v.EndsAt.Sub(got) != 90*time.Minute || v.Capacity != 12 {
		t.Errorf("pool = %+v, want 90 minutes from %v, capacity 12", v, want)
	}
	if _, err := s.svc.Pool(context.Background(), "north-delivery-20300318-0800"); capacity.ErrorCode(err) != capacity.ENOTFOUND {
		t.Errorf("an eighth day was created: %v", err)
	}

	t.Run("idempotent", func(t *testing.T) {
		res := s.post(t, "/ui/week", weekValues())
		wantStatus(t, res, http.StatusOK)
		wantBody(t, res, `<dd id="week-created">0</dd>`, `<dd id="week-existing">27</dd>`, `<dd id="week-conflicts">1</dd>`)
	})
	t.Run("on the board", func(t *testing.T) {
		s.caughtUp(t, v.Version)
		res := s.get(t, "/?from=2030-03-11&to=2030-03-17")
		wantBody(t, res, "north delivery 2030-03-17 18:30 UTC: 0% used, 0 held and 0 confirmed of capacity 12")
	})
	for _, tc := range []struct {
		name, field, value, want string
	}{
		{"no regions", "regions", " , ", `id="e-regions"`},
		{"bad region", "regions", "north, so uth!", "so"},
		{"bad kind", "kinds", "deli.very", `id="e-kinds"`},
		{"ids too long", "kinds", "k234567890123456789012345678901234567890123456789", "to fit in pool ids"},
		{"bad slot", "slots", "8am", `&#34;8am&#34;: give start times as HH:MM`},
		{"no slot", "slots", "", "give at least one start time"},
		{"zero minutes", "minutes", "0", `id="e-minutes"`},
		{"negative capacity", "capacity", "-3", `id="e-capacity"`},
		{"bad date", "start", "11/03/2030", `id="e-start"`},
		{"too many", "slots", manySlots(), "one template makes at most 5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := weekValues()
			form.Set(tc.field, tc.value)
			form.Set("start", "2031-01-06")
			if tc.field == "start" {
				form.Set("start", tc.value)
			}
			if tc.name == "too many" {
				form.Set("regions", "a b c d e f g h i j k l m n")
			}
			res := s.post(t, "/ui/week", form)
			wantStatus(t, res, http.StatusBadRequest)
			wantBody(t, res, "Nothing was created", tc.want, `aria-invalid="true"`)
			if _, err := s.svc.Pool(context.Background(), "north-delivery-20310106-0800"); capacity.ErrorCode(err) != capacity.ENOTFOUND {
				t.Errorf("a refused template created pools")
			}
		})
	}
}

// manySlots is every quarter hour of a day.
func manySlots() string {
	var s string
	for m := 0; m < 24*60; m += 15 {
		s += time.Date(0, 1, 1, 0, m, 0, 0, time.UTC).Format("15:04") + ","
	}
	return s
}

func TestWeekPoolID(t *testing.T) {
	slot := time.Date(2030, 3, 11, 18, 30, 0, 0, time.FixedZone("CET", 3600))
	if got, want := weekPoolID("north", "delivery", slot), "north-delivery-20300311-1730"; got != want {
		t.Errorf("weekPoolID = %q, want %q", got, want)
	}
}
