package ui

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Chart geometry, in SVG user units; the SVG scales to its container.
const (
	chartWidth  = 720
	chartHeight = 220
	chartLeft   = 48
	chartRight  = 12
	chartTop    = 12
	chartBottom = 30
)

// chartPoint is a pool's units in use and capacity from At on.
type chartPoint struct {
	At       time.Time
	Used     int
	Capacity int
}

// chart is the utilisation chart of the pool page, drawn server-side as
// inline SVG: a step line of units in use over a dashed step line of
// capacity.
type chart struct {
	Width, Height int
	// Used and Capacity are SVG path data; UsedArea fills under Used.
	Used, UsedArea, Capacity string
	YTicks, XTicks           []chartTick
	// Left, Right, Top and Bottom are the plot's edges.
	Left, Right, Top, Bottom int
	// Summary says in words what the chart shows (its <desc>).
	Summary string
	Empty   bool
}

// chartTick is a labelled position on an axis.
type chartTick struct {
	Pos    string
	Label  string
	Anchor string // SVG text-anchor: start, middle or end
}

// buildChart draws the series; limit is the pool's current capacity plus
// overbooking, so the scale always shows it.
func buildChart(series []chartPoint, limit int) chart {
	c := chart{Width: chartWidth, Height: chartHeight, Left: chartLeft, Right: chartWidth - chartRight,
		Top: chartTop, Bottom: chartHeight - chartBottom}
	if len(series) == 0 {
		c.Empty, c.Summary = true, "No events yet."
		return c
	}
	first, last := series[0].At, series[len(series)-1].At
	if !last.After(first) {
		last = first.Add(time.Minute)
	}
	yMax, peak := max(limit, 1), series[0]
	for _, p := range series {
		yMax = max(yMax, p.Used, p.Capacity)
		if p.Used > peak.Used {
			peak = p
		}
	}
	yMax = niceCeil(yMax)
	span := last.Sub(first).Seconds()
	x := func(t time.Time) float64 {
		return float64(c.Left) + float64(c.Right-c.Left)*t.Sub(first).Seconds()/span
	}
	y := func(v int) float64 {
		return float64(c.Bottom) - float64(c.Bottom-c.Top)*float64(v)/float64(yMax)
	}
	series = downsample(series, x)
	c.Used = stepPath(series, x, func(p chartPoint) float64 { return y(p.Used) })
	c.Capacity = stepPath(series, x, func(p chartPoint) float64 { return y(p.Capacity) })
	c.UsedArea = c.Used + fmt.Sprintf(" V%s H%s Z", num(y(0)), num(x(series[0].At)))
	yTicks := []int{0, yMax / 2, yMax}
	if yMax == 1 {
		yTicks = []int{0, 1}
	}
	for _, v := range yTicks {
		c.YTicks = append(c.YTicks, chartTick{Pos: num(y(v)), Label: strconv.Itoa(v), Anchor: "end"})
	}
	layout := "15:04"
	switch span := last.Sub(first); {
	case span > 24*time.Hour:
		layout = "2 Jan 15:04"
	case span < time.Hour:
		layout = "15:04:05"
	}
	for i, t := range []time.Time{first, first.Add(last.Sub(first) / 2), last} {
		c.XTicks = append(c.XTicks, chartTick{Pos: num(x(t)), Label: t.UTC().Format(layout), Anchor: []string{"start", "middle", "end"}[i]})
	}
	end := series[len(series)-1]
	c.Summary = fmt.Sprintf("Units in use from %s to %s UTC: now %d of capacity %d; peak %d at %s UTC.",
		first.UTC().Format("2006-01-02 15:04"), last.UTC().Format("2006-01-02 15:04"),
		end.Used, end.Capacity, peak.Used, peak.At.UTC().Format("2006-01-02 15:04:05"))
	return c
}

// downsample keeps at most one point per horizontal unit of the plot, the
// busiest of each, plus the last, so a long history draws in bounded size.
func downsample(series []chartPoint, x func(time.Time) float64) []chartPoint {
	if len(series) <= chartWidth {
		return series
	}
	out := make([]chartPoint, 0, chartWidth+1)
	bucket := -1
	for _, p := range series {
		b := int(x(p.At))
		switch {
		case b != bucket:
			out = append(out, p)
			bucket = b
		case p.Used > out[len(out)-1].Used:
			out[len(out)-1].Used = p.Used
		default:
			out[len(out)-1].Capacity = p.Capacity
		}
	}
	if lastP := series[len(series)-1]; !out[len(out)-1].At.Equal(lastP.At) {
		out = append(out, lastP)
	}
	return out
}

// stepPath draws values that hold until the next point.
func stepPath(series []chartPoint, x func(time.Time) float64, y func(chartPoint) float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "M%s %s", num(x(series[0].At)), num(y(series[0])))
	for _, p := range series[1:] {
		fmt.Fprintf(&b, " H%s V%s", num(x(p.At)), num(y(p)))
	}
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v int) int {
	if v <= 1 {
		return 1
	}
	for pow := 1; ; pow *= 10 {
		for _, m := range []int{1, 2, 5} {
			if m*pow >= v {
				return m * pow
			}
		}
	}
}

// num formats an SVG coordinate with one decimal.
func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
