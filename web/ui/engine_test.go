package ui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools/poolstest"
	"github.com/capacityd/capacityd/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func TestEngineParsesEveryView(t *testing.T) {
	e, err := newEngine(time.Now, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range declaredViews {
		if e.views[v] == nil {
			t.Errorf("view %s not parsed", v)
		}
	}
	for _, a := range []string{"ui.css", "board.js", "week.js"} {
		if _, ok := e.assets[a]; !ok {
			t.Errorf("asset %s not embedded", a)
		}
	}
}

// TestTemplateErrorIsClean500 renders a view with data it cannot use: the
// answer is a plain 500, never half a page.
func TestTemplateErrorIsClean500(t *testing.T) {
	logs := &poolstest.LogBuffer{}
	e, err := newEngine(time.Now, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.render(rec, httptest.NewRequest(http.MethodGet, "/", nil), http.StatusOK, viewPool, struct{ Title string }{"wrong data"})
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "<html") {
		t.Errorf("status %d, body %q; want a plain 500", rec.Code, rec.Body.String())
	}
	if !strings.Contains(logs.String(), "template failed") {
		t.Errorf("template error not logged: %s", logs.String())
	}
}

func TestStaticAssets(t *testing.T) {
	s := newStack(t)
	hash := s.ui.engine.assets["board.js"].hash
	res := s.get(t, "/ui/static/board.js?v="+hash)
	wantStatus(t, res, http.StatusOK)
	if got := res.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/javascript") {
		t.Errorf("Content-Type = %q", got)
	}
	if got := res.Header.Get("Cache-Control"); !strings.Contains(got, "immutable") {
		t.Errorf("Cache-Control = %q, want immutable for the hashed URL", got)
	}
	wantBody(t, res, "new EventSource(")
	if res := s.get(t, "/ui/static/board.js"); res.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("unhashed asset Cache-Control = %q", res.Header.Get("Cache-Control"))
	}
	wantStatus(t, s.get(t, "/ui/static/nope.js"), http.StatusNotFound)
	board := s.get(t, "/")
	wantBody(t, board, `href="/ui/static/ui.css?v=`+s.ui.engine.assets["ui.css"].hash+`"`, `src="/ui/static/board.js?v=`+hash+`" defer`)
}

func TestErrorPages(t *testing.T) {
	s := newStack(t)
	res := s.get(t, "/ui/nowhere")
	wantStatus(t, res, http.StatusNotFound)
	wantBody(t, res, "There is no page at /ui/nowhere.", `href="/"`)
	res = serve(t, s.handler, httptest.NewRequest(http.MethodDelete, "/ui/week", nil))
	wantStatus(t, res, http.StatusMethodNotAllowed)
	res = s.get(t, "/ui")
	wantStatus(t, res, http.StatusSeeOther)
}

func TestPoolList(t *testing.T) {
	s := newStack(t)
	tue := epoch.Add(26 * time.Hour)
	s.define(t, "a1", "north", "delivery", tue, 4)
	s.define(t, "a2", "north", "delivery", tue.Add(2*time.Hour), 4)
	v := s.define(t, "b1", "south", "picking", tue, 4)
	s.caughtUp(t, v.Version)

	res := s.get(t, "/ui/pools?region=north")
	wantStatus(t, res, http.StatusOK)
	wantBody(t, res, `<a href="/ui/pools/a1">a1</a>`, `<a href="/ui/pools/a2">a2</a>`)
	wantNoBody(t, res, `/ui/pools/b1"`)

	res = s.get(t, "/ui/pools?region=north&kind=delivery&slot="+tue.Add(2*time.Hour).Format(time.RFC3339))
	wantStatus(t, res, http.StatusSeeOther)
	if got := res.Header.Get("Location"); got != "/ui/pools/a2" {
		t.Errorf("one pool in the slot: Location = %q, want /ui/pools/a2", got)
	}
	res = s.get(t, "/ui/pools?id=b1")
	wantStatus(t, res, http.StatusSeeOther)
	res = s.get(t, "/ui/pools?id=b.1")
	wantStatus(t, res, http.StatusBadRequest)
	wantBody(t, res, `id="e-id"`)
	res = s.get(t, "/ui/pools?from=March")
	wantStatus(t, res, http.StatusBadRequest)
	wantBody(t, res, `id="e-from"`, "must be a date")
	res = s.get(t, "/ui/pools?cursor=!!")
	wantStatus(t, res, http.StatusBadRequest)
	wantBody(t, res, "malformed cursor")
}

// TestMountedInWeb serves the UI through the API server, as capacityd
// does: pages at / and /ui/..., the stream at /v1/board/stream, the API
// unchanged.
func TestMountedInWeb(t *testing.T) {
	s := newStack(t)
	v := s.define(t, "p1", "north", "delivery", epoch.Add(26*time.Hour), 4)
	s.caughtUp(t, v.Version)
	api := web.NewServer(web.Config{Pools: s.svc, History: s.events, UI: s.ui, Now: s.clock.Now})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	for path, want := range map[string]string{
		"/":                 "Capacity board",
		"/ui/pools/p1":      "Pool p1",
		"/ui/week":          "Create a week of pools",
		"/v1/pools/p1":      `"id":"p1"`,
		"/ui/static/ui.css": "--ink",
	} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, res)
		if res.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, body lacks %q", path, res.StatusCode, want)
		}
	}
	stream := openStream(t, srv.URL, "", "")
	if ev := stream.next(); ev.Type != "snapshot" || !strings.Contains(ev.Data, `"key":"north|delivery|`) {
		t.Errorf("stream through web: first event %+v", ev)
	}
	// Unknown API paths stay problem+json, not UI pages.
	res, err := http.Get(srv.URL + "/v1/nope")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if got := res.Header.Get("Content-Type"); res.StatusCode != http.StatusNotFound || got != "application/problem+json" {
		t.Errorf("GET /v1/nope: %d %s", res.StatusCode, got)
	}
	// A refused stream is a problem too, not plain text.
	res, err = http.Get(srv.URL + "/v1/board/stream?from=soon")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if got := res.Header.Get("Content-Type"); res.StatusCode != http.StatusBadRequest || got != "application/problem+json" {
		t.Errorf("GET /v1/board/stream?from=soon: %d %s", res.StatusCode, got)
	}
	// Without a UI the stream is a 503 problem.
	bare := serve(t, web.NewServer(web.Config{Pools: s.svc, History: s.events}), httptest.NewRequest(http.MethodGet, "/v1/board/stream", nil))
	if bare.Status != http.StatusServiceUnavailable || !strings.Contains(bare.Body, capacity.EUNAVAILABLE) {
		t.Errorf("stream without UI: %d %s", bare.Status, bare.Body)
	}
}

func readAll(t testing.TB, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func TestNiceCeil(t *testing.T) {
	for in, want := range map[int]int{0: 1, 1: 1, 2: 2, 3: 5, 7: 10, 12: 20, 50: 50, 51: 100, 999: 1000} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestBuildChart(t *testing.T) {
	if c := buildChart(nil, 5); !c.Empty {
		t.Errorf("no series: chart not empty")
	}
	var series []chartPoint
	for i := range 5000 { // longer than the plot is wide: downsampled
		series = append(series, chartPoint{At: epoch.Add(time.Duration(i) * time.Second), Used: i % 7, Capacity: 10})
	}
	c := buildChart(series, 10)
	if n := strings.Count(c.Used, " H"); n > chartWidth+1 {
		t.Errorf("used path has %d steps, want at most %d", n, chartWidth+1)
	}
	if !strings.Contains(c.Summary, "peak 6") {
		t.Errorf("summary = %q", c.Summary)
	}
}

// TestRouteLabels checks that UI requests are counted under their own route
// patterns on /metrics: one router, so no doubled prefixes and no board
// counted as unmatched.
func TestRouteLabels(t *testing.T) {
	s := newStack(t)
	v := s.define(t, "p1", "north", "delivery", epoch.Add(26*time.Hour), 4)
	s.caughtUp(t, v.Version)
	reg := prometheus.NewRegistry()
	h := web.NewServer(web.Config{Pools: s.svc, History: s.events, UI: s.ui, Now: s.clock.Now, Registry: reg})
	for _, path := range []string{"/", "/ui/pools", "/ui/pools/p1", "/ui/board/grid", "/ui/static/ui.css", "/ui/nowhere"} {
		serve(t, h, httptest.NewRequest(http.MethodGet, path, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the stream answers its headers and ends with the request
	serve(t, h, httptest.NewRequest(http.MethodGet, "/v1/board/stream", nil).WithContext(ctx))
	metrics := serve(t, h, httptest.NewRequest(http.MethodGet, "/metrics", nil)).Body
	for _, route := range []string{"/", "/ui/pools", "/ui/pools/{pool}", "/ui/board/grid", "/ui/static/*", "/v1/board/stream"} {
		if want := `route="` + route + `"`; !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, bad := range []string{`route="/ui/ui`, `route="/v1/board/stream/v1`, `route="unmatched",status="200"`} {
		if strings.Contains(metrics, bad) {
			t.Errorf("metrics hold %s", bad)
		}
	}
}
