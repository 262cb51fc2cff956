package views

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/capacityd/capacityd/capacity"
)

// Positions says how far a read reflects each region's event stream: the
// read models of a region consume its own stream and its mirror of every
// other region's, each with its own sequence.
type Positions struct {
	Home    string            // the region serving the read
	Regions map[string]uint64 // region -> last sequence of its stream reflected
}

// Position returns the sequence of the serving region's own stream (the
// single position of a one-region deployment).
func (p Positions) Position() uint64 { return p.Regions[p.Home] }

// MinPositions is what a reader waits for: region -> sequence. The key ""
// stands for the region the read is about (the serving region for
// availability and lookups).
type MinPositions map[string]uint64

// ParseMinPositions parses a min_position parameter: "N", "region:N", or a
// comma-separated list of those ("" is no minimum).
func ParseMinPositions(s string) (MinPositions, error) {
	if s == "" {
		return nil, nil
	}
	out := MinPositions{}
	for item := range strings.SplitSeq(s, ",") {
		region, num, ok := strings.Cut(item, ":")
		if !ok {
			region, num = "", item
		} else if !capacity.ValidID(region) {
			return nil, fmt.Errorf("region %q: must be 1-64 characters of [A-Za-z0-9_-]", region)
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil || n > 1<<63 {
			return nil, fmt.Errorf("%q: want N or region:N with N a non-negative integer", item)
		}
		if _, dup := out[region]; dup {
			return nil, fmt.Errorf("region %q given twice", region)
		}
		out[region] = n
	}
	return out, nil
}
