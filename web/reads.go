package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
)

// Limits of the events route's limit parameter.
const (
	DefaultEventsLimit = 1000
	MaxEventsLimit     = 10000
)

// eventJSON is one recorded event: the stream sequence of its commit (the
// events of one group-committed change share it), type, the time the store
// took it and the event's own JSON.
type eventJSON struct {
	Seq  uint64          `json:"seq"`
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// eventsJSON is a page of a pool's history. NextFrom is the from of the
// next page.
type eventsJSON struct {
	Events   []eventJSON `json:"events"`
	NextFrom uint64      `json:"next_from"`
}

// minPositionParam parses the optional min_position parameter: N (the
// region the read is about), region:N, or a comma-separated list of those.
func minPositionParam(q url.Values) (views.MinPositions, error) {
	if !q.Has("min_position") {
		return nil, nil
	}
	s := q.Get("min_position")
	minPos, err := views.ParseMinPositions(s)
	if err != nil || s == "" {
		return nil, invalid("query parameter min_position must be N or region:N, N a non-negative integer",
			map[string]string{"min_position": "must be N or region:N (comma-separated), N a non-negative integer"})
	}
	return minPos, nil
}

// uintParam parses an optional unsigned query parameter within [min, max].
func uintParam(q url.Values, name string, def, min, max uint64) (uint64, error) {
	s := q.Get(name)
	if s == "" && !q.Has(name) {
		return def, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n < min || n > max {
		return 0, invalid(fmt.Sprintf("query parameter %s must be an integer between %d and %d", name, min, max),
			map[string]string{name: fmt.Sprintf("must be an integer between %d and %d", min, max)})
	}
	return n, nil
}

func handleEvents(h History) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pool, err := idParam(r, "pool")
		if err != nil {
			Error(w, r, err)
			return
		}
		q := r.URL.Query()
		from, err := uintParam(q, "from", 1, 1, 1<<63)
		if err != nil {
			Error(w, r, err)
			return
		}
		limit, err := uintParam(q, "limit", DefaultEventsLimit, 1, MaxEventsLimit)
		if err != nil {
			Error(w, r, err)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		out := eventsJSON{Events: []eventJSON{}, NextFrom: from}
		for rec, err := range h.Read(ctx, pool, from-1) {
			if err != nil {
				Error(w, r, historyError(r, err))
				return
			}
			data, err := capacity.Encode(rec.Event)
			if err != nil {
				Error(w, r, fmt.Errorf("encoding event %d: %w", rec.Seq, err))
				return
			}
			if uint64(len(out.Events)) >= limit && rec.Seq >= out.NextFrom {
				break // the page is full and the next commit starts here; a commit is never split
			}
			out.Events = append(out.Events, eventJSON{Seq: rec.Seq, Type: rec.Event.EventType(), Time: rec.Stored.UTC(), Data: data})
			out.NextFrom = rec.Seq + 1
		}
		if len(out.Events) == 0 {
			last, err := h.LastSeq(ctx, pool)
			if err != nil {
				Error(w, r, historyError(r, err))
				return
			}
			if last == 0 {
				Error(w, r, capacity.Errorf(capacity.ENOTFOUND, "pool not found"))
				return
			}
		}
		encode(w, r, http.StatusOK, out)
	}
}

// historyError classifies a failure to read a history: an event that
// cannot be decoded is internal (the client is not at fault), anything else
// is the store being unreachable.
func historyError(r *http.Request, err error) error {
	if code := capacity.ErrorCode(err); code == capacity.EINVALID || code == capacity.EINTERNAL {
		return fmt.Errorf("reading history: %s", err.Error()) // internal: logged by Error, not shown
	}
	RequestLogger(r.Context()).Warn().Err(err).Str("path", r.URL.Path).Msg("reading history failed")
	return capacity.Errorf(capacity.EUNAVAILABLE, "the event store is unavailable, try again")
}

// availabilityJSON is a page of the availability read model.
type availabilityJSON struct {
	Position      uint64            `json:"position"`
	Positions     map[string]uint64 `json:"positions,omitempty"`
	Pools         []poolJSON        `json:"pools"`
	NextPageToken string            `json:"next_page_token,omitempty"`
}

// MaxMinPositionWait bounds how long GET /v1/availability waits for the
// read model to reach min_position.
const MaxMinPositionWait = 5 * time.Second

// availabilityQuery parses the query string of GET /v1/availability: the
// read model's query (its limits are views.DefaultLimit and views.MaxLimit)
// and min_position.
func availabilityQuery(q url.Values) (views.AvailabilityQuery, views.MinPositions, error) {
	problems := make(map[string]string)
	aq := views.AvailabilityQuery{Region: q.Get("region"), Kind: q.Get("kind"), Cursor: q.Get("page_token")}
	for name, v := range map[string]string{"region": aq.Region, "kind": aq.Kind} {
		if v != "" && !capacity.ValidID(v) {
			problems[name] = idProblem
		}
	}
	for name, t := range map[string]*time.Time{"from": &aq.From, "to": &aq.To} {
		if s := q.Get(name); s != "" {
			parsed, problem := parseTime(s)
			if problem != "" {
				problems[name] = problem
			}
			*t = parsed
		}
	}
	if !aq.From.IsZero() && !aq.To.IsZero() && !aq.To.After(aq.From) {
		problems["to"] = "must be after from"
	}
	if len(aq.Cursor) > 1024 {
		problems["page_token"] = "too long"
	}
	minPos, err := views.ParseMinPositions(q.Get("min_position"))
	if err != nil {
		problems["min_position"] = "must be N or region:N (comma-separated), N a non-negative integer"
	}
	limit, err := uintParam(q, "limit", views.DefaultLimit, 1, views.MaxLimit)
	if err != nil {
		problems["limit"] = fmt.Sprintf("must be an integer between 1 and %d", views.MaxLimit)
	}
	if len(problems) > 0 {
		return aq, nil, invalid("query has invalid parameters", problems)
	}
	aq.Limit = int(limit)
	return aq, minPos, nil
}

func handleAvailability(a Availability) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, minPos, err := availabilityQuery(r.URL.Query())
		if err != nil {
			Error(w, r, err)
			return
		}
		if a == nil {
			Error(w, r, capacity.Errorf(capacity.EUNAVAILABLE, "the availability read model is not running"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), MaxMinPositionWait)
		defer cancel()
		page, err := a.Availability(ctx, q, minPos)
		if err != nil {
			Error(w, r, err)
			return
		}
		out := availabilityJSON{Position: page.Position, Positions: page.Positions.Regions, Pools: make([]poolJSON, len(page.Pools)), NextPageToken: page.Next}
		for i, v := range page.Pools {
			out.Pools[i] = poolOf(v)
		}
		encode(w, r, http.StatusOK, out)
	}
}

// handleBoardStream is the board's live feed (server-sent events), served
// by the planner UI, which renders the board's cells; without one it is 503.
func handleBoardStream(ui UI) http.HandlerFunc {
	if ui == nil {
		return func(w http.ResponseWriter, r *http.Request) {
			Error(w, r, capacity.Errorf(capacity.EUNAVAILABLE, "the planner board is not running"))
		}
	}
	stream := ui.BoardStream()
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			// HEAD gets the stream's headers, not a stream that never ends.
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			return
		}
		stream(w, r)
	}
}
