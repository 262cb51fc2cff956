package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// liveBudget is how soon a booking must show on an open board.
const liveBudget = time.Second

// holdBody is the JSON body of a hold through the API.
type holdBody struct {
	ReservationID string `json:"reservation_id"`
	Quantity      int    `json:"quantity"`
}

// TestUIBrowserPlanner drives the planner in headless chromium against the
// whole service: create a week from a template (twice: the second creates
// nothing), watch a booking made through the HTTP API appear on the open
// board without a reload, change a capacity, lose an If-Match race in a
// second tab and retry, close a pool and see it marked live. Screenshots go
// to $CAPACITY_ARTIFACTS/TestUIBrowserPlanner (or a temporary directory).
func TestUIBrowserPlanner(t *testing.T) {
	svc := startPlanner(t)
	b := startBrowser(t)
	t.Logf("planner served by %s at %s; screenshots in %s", svc.Mode, svc.URL, b.artifacts)
	day := time.Now().UTC().AddDate(0, 0, 1) // tomorrow: holds need a pool whose window is ahead
	ymd := day.Format("20060102")
	slot := time.Date(day.Year(), day.Month(), day.Day(), 12, 0, 0, 0, time.UTC)
	pool := "north-delivery-" + ymd + "-1200"
	cell := fmt.Sprintf(`td[data-key="north|delivery|%d"]`, slot.Unix())

	// A week from a template, from tomorrow: 2 regions x 1 kind x 3 slots x 7 days.
	week := b.tab()
	createWeek := func() {
		t.Helper()
		b.do(week, "fill the week template",
			chromedp.Navigate(svc.URL+"/ui/week"),
			chromedp.WaitVisible(chromedp.CSS("#w-regions")),
			chromedp.SetValue(chromedp.CSS("#w-regions"), "north, south"),
			chromedp.SetValue(chromedp.CSS("#w-kinds"), "delivery"),
			chromedp.SetValue(chromedp.CSS("#w-slots"), "08:00, 12:00, 18:00"),
			chromedp.SetValue(chromedp.CSS("#w-capacity"), "10"),
			chromedp.SetValue(chromedp.CSS("#w-start"), day.Format("2006-01-02")),
			chromedp.Click(chromedp.CSS("#week-form button[type=submit]")),
			chromedp.WaitVisible(chromedp.CSS("#week-result")),
		)
	}
	createWeek()
	if got := b.text(week, "#week-created"); got != "42" {
		t.Fatalf("created %s pools, want 42; existing %s", got, b.text(week, "#week-existing"))
	}
	b.screenshot(week, "week-created")
	createWeek()
	if created, existing := b.text(week, "#week-created"), b.text(week, "#week-existing"); created != "0" || existing != "42" {
		t.Fatalf("second submission: created %s, existing %s; want 0 and 42", created, existing)
	}

	// The board, open and live.
	board := b.ctx
	b.do(board, "open the board",
		chromedp.EmulateViewport(1366, 900),
		chromedp.Navigate(svc.URL+"/?kind=delivery"),
		chromedp.WaitVisible(chromedp.CSS(cell)),
		chromedp.Poll[chromedp.Void](`document.getElementById("live").dataset.state === "live"`, chromedp.WithPollingTimeout(10*time.Second)),
	)
	if got := b.text(board, cell+" .pct"); got != "0%" {
		t.Fatalf("cell before booking shows %q, want 0%%", got)
	}
	eval[bool](b, board, `window.plannerMarker = "no reload"; true`)

	// A booking through the HTTP API shows on the board without a reload.
	api := NewClient(svc.URL, 10*time.Second)
	defer api.Close()
	booked := time.Now()
	res := api.Do(context.Background(), http.MethodPost, "/v1/pools/"+pool+"/holds", holdBody{ReservationID: "browser-1", Quantity: 4}, nil)
	if res.Status != http.StatusCreated {
		t.Fatalf("hold through the API: %d %s", res.Status, res.Body)
	}
	b.do(board, "see the booking on the board",
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent === "40%%"`, cell+" .pct"),
			chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(5*time.Second)))
	latency := time.Since(booked)
	t.Logf("booking visible on the board %v after the API call", latency)
	if latency > liveBudget {
		t.Errorf("the board showed the booking after %v, want within %v", latency, liveBudget)
	}
	if got := eval[string](b, board, `window.plannerMarker || "reloaded"`); got != "no reload" {
		t.Errorf("the board page was reloaded (marker %q)", got)
	}
	if got := b.text(board, cell+" .fig"); got != "4 / 10" {
		t.Errorf("cell figures = %q, want 4 / 10", got)
	}
	b.screenshot(board, "board-live")

	// Change a capacity on the pool page.
	tabA := b.tab()
	b.do(tabA, "change capacity",
		chromedp.Navigate(svc.URL+"/ui/pools/"+pool),
		chromedp.WaitVisible(chromedp.CSS("#capacity")),
		chromedp.SetValue(chromedp.CSS("#capacity"), "20"),
		chromedp.Click(chromedp.CSS("#capacity-form button")),
		chromedp.WaitVisible(chromedp.CSS("#flash.flash-ok")),
	)
	if got := b.text(tabA, "#fig-capacity"); got != "20" {
		t.Fatalf("capacity after the change = %s, want 20", got)
	}
	b.do(board, "see the new capacity on the board",
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent === "4 / 20"`, cell+" .fig"),
			chromedp.WithPollingTimeout(5*time.Second)))
	b.screenshot(tabA, "pool-page")

	// Two tabs on the same version: the second to submit gets 412 with the
	// current figures, then retries deliberately.
	tabB := b.tab()
	b.do(tabB, "open the pool in a second tab", chromedp.Navigate(svc.URL+"/ui/pools/"+pool), chromedp.WaitVisible(chromedp.CSS("#capacity")))
	b.do(tabA, "first tab changes capacity",
		chromedp.SetValue(chromedp.CSS("#capacity"), "25"),
		chromedp.Click(chromedp.CSS("#capacity-form button")),
		chromedp.WaitVisible(chromedp.CSS("#flash.flash-ok")),
	)
	b.do(tabB, "second tab submits a stale form",
		chromedp.SetValue(chromedp.CSS("#capacity"), "30"),
		chromedp.Click(chromedp.CSS("#capacity-form button")),
		chromedp.WaitVisible(chromedp.CSS("#flash.flash-error")),
	)
	if msg := b.text(tabB, "#flash"); !strings.Contains(msg, "was not applied") || !strings.Contains(msg, "capacity 25") {
		t.Fatalf("conflict message = %q, want the current figures (capacity 25)", msg)
	}
	if got := b.text(tabB, "#fig-capacity"); got != "25" {
		t.Errorf("the conflict page shows capacity %s, want the current 25", got)
	}
	b.screenshot(tabB, "pool-conflict")
	b.do(tabB, "retry after the conflict",
		chromedp.Click(chromedp.CSS("#capacity-form button")),
		chromedp.WaitVisible(chromedp.CSS("#flash.flash-ok")),
	)
	if got := b.text(tabB, "#fig-capacity"); got != "30" {
		t.Errorf("capacity after the retry = %s, want 30", got)
	}

	// Close the pool: the open board marks it without a reload.
	b.do(tabB, "close the pool",
		chromedp.Click(chromedp.CSS("#status-form button")),
		chromedp.WaitVisible(chromedp.CSS("#flash.flash-ok")),
	)
	b.do(board, "see the pool closed on the board",
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(document.querySelector(%q) || {className: ""}).className.includes("closed")`, cell),
			chromedp.WithPollingTimeout(5*time.Second)))
	if got := b.text(board, cell+" .flags"); !strings.EqualFold(got, "closed") {
		t.Errorf("closed cell flags = %q, want closed", got)
	}
	b.screenshot(board, "board-laptop")
	b.do(board, "tablet width", chromedp.EmulateViewport(768, 1024))
	b.screenshot(board, "board-tablet")

	// capacityd verify publishes its verdict; the board shows the last one.
	report := runCapacityd(t, "verify", "--nats-url", svc.NATSURL, "--region", "local")
	if !strings.Contains(report, "domain local: read models equal a fresh fold: 42 pools of region local") {
		t.Errorf("verify of the planner's region: want its read models of 42 pools equal a fresh fold:\n%s", report)
	}
	b.do(board, "reload the board after verify",
		chromedp.Navigate(svc.URL+"/?kind=delivery"),
		chromedp.WaitVisible(chromedp.CSS(`#verify li[data-region="local"]`)))
	if got := b.text(board, `#verify li[data-region="local"]`); !strings.HasPrefix(got, "verify: region local ok") || !strings.Contains(got, "1 read models") {
		t.Errorf("board's verify line = %q, want verify: region local ok ... 1 read models", got)
	}
	b.screenshot(board, "board-verified")
}
