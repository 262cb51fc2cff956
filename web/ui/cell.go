package ui

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity/views"
)

// cellView is a board cell as the page and the live feed show it. The
// board template and board.js render the same fields, so a cell updated
// live reads exactly as one rendered by the server.
type cellView struct {
	// Key identifies the cell on the page: region|kind|slot unix seconds.
	Key string `json:"key"`
	// Traceparent, on a live change, is the W3C trace context of the write
	// that made it (absent when that write was not traced).
	Traceparent string    `json:"traceparent,omitempty"`
	Region      string    `json:"region"`
	Kind        string    `json:"kind"`
	Day         string    `json:"day"`
	Slot        time.Time `json:"slot"`
	Time        string    `json:"time"` // time of day of the slot, UTC, 15:04
	Pools       int       `json:"pools"`
	Capacity    int       `json:"capacity"`
	Held        int       `json:"held"`
	Confirmed   int       `json:"confirmed"`
	Used        int       `json:"used"`
	// Percent is the utilisation, (held+confirmed)/capacity, rounded.
	Percent int `json:"percent"`
	// Label is the utilisation as text ("75%", "no capacity").
	Label string `json:"label"`
	// Figures is "used / capacity".
	Figures string `json:"figures"`
	// Level is the CSS class of the colour: u0 (empty) to u5 (full),
	// over, none (no capacity) or gone (no pool left).
	Level string `json:"level"`
	// Closed is true when every pool of the cell is closed; Over when some
	// pool holds more than its limit.
	Closed bool `json:"closed"`
	Over   bool `json:"over"`
	// Flags is the marks as text: "closed", "over capacity".
	Flags string `json:"flags"`
	// Description is the cell in one sentence, for screen readers and
	// tooltips.
	Description string `json:"description"`
	// Href is the page of the cell's pools.
	Href string `json:"href"`
}

// cellKey is the key of the cell of a region, kind and slot.
func cellKey(region, kind string, slot time.Time) string {
	return region + "|" + kind + "|" + strconv.FormatInt(slot.Unix(), 10)
}

// viewOfCell returns how a board cell is shown.
func viewOfCell(c views.Cell) cellView {
	slot := c.Slot.UTC()
	v := cellView{
		Key: cellKey(c.Region, c.Kind, slot), Region: c.Region, Kind: c.Kind, Day: c.Day, Slot: slot,
		Time: slot.Format("15:04"), Pools: c.Pools, Capacity: c.Capacity, Held: c.Held, Confirmed: c.Confirmed,
		Used: c.Held + c.Confirmed, Closed: c.Closed(), Over: c.OverCapacity(),
	}
	v.Figures = fmt.Sprintf("%d / %d", v.Used, v.Capacity)
	switch {
	case c.Pools == 0:
		v.Level, v.Label, v.Figures = "gone", "no pool", ""
	case v.Capacity == 0 && v.Used == 0:
		v.Level, v.Label = "none", "no capacity"
	case v.Capacity == 0:
		v.Percent, v.Level, v.Label = 100, "over", "over"
		v.Over = true
	default:
		v.Percent = (v.Used*100 + v.Capacity/2) / v.Capacity
		v.Label = strconv.Itoa(v.Percent) + "%"
		v.Level = levelOf(v.Used, v.Capacity)
	}
	if v.Used > v.Capacity && v.Pools > 0 {
		v.Level = "over"
	}
	var flags []string
	if v.Closed {
		flags = append(flags, "closed")
	}
	if v.Over {
		flags = append(flags, "over capacity")
	}
	v.Flags = strings.Join(flags, ", ")
	v.Description = describeCell(v)
	v.Href = cellHref(c.Region, c.Kind, slot)
	return v
}

// levelOf buckets utilisation into the board's colours.
func levelOf(used, capacity int) string {
	switch {
	case used == 0:
		return "u0"
	case used*4 < capacity:
		return "u1"
	case used*2 < capacity:
		return "u2"
	case used*4 < capacity*3:
		return "u3"
	case used < capacity:
		return "u4"
	case used == capacity:
		return "u5"
	}
	return "over"
}

// describeCell says what a cell shows in words.
func describeCell(v cellView) string {
	if v.Pools == 0 {
		return fmt.Sprintf("%s %s %s %s: no pool", v.Region, v.Kind, v.Day, v.Time)
	}
	s := fmt.Sprintf("%s %s %s %s UTC: %s used, %d held and %d confirmed of capacity %d", v.Region, v.Kind, v.Day, v.Time,
		v.Label, v.Held, v.Confirmed, v.Capacity)
	if v.Pools > 1 {
		s += fmt.Sprintf(" over %d pools", v.Pools)
	}
	if v.Flags != "" {
		s += " (" + v.Flags + ")"
	}
	return s
}

// cellHref links a cell to the list of its pools, which redirects to the
// pool when there is only one.
func cellHref(region, kind string, slot time.Time) string {
	q := url.Values{}
	q.Set("region", region)
	q.Set("kind", kind)
	q.Set("slot", slot.UTC().Format(time.RFC3339))
	return "/ui/pools?" + q.Encode()
}
