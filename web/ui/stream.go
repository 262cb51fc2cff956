package ui

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/web"
)

// streamBuffer is how many changes a board stream may fall behind before
// the board drops it; the stream then resubscribes and sends a snapshot.
const streamBuffer = 1024

// streamWriteTimeout bounds one write to a board stream, so a client that
// stopped reading does not hold its handler forever.
const streamWriteTimeout = 10 * time.Second

// sse writes server-sent events. Send is safe for concurrent use, though
// the board stream sends from its handler's goroutine only.
type sse struct {
	mu sync.Mutex
	w  http.ResponseWriter
	rc *http.ResponseController
}

// newSSE starts an event stream: headers out at once, so the browser's
// EventSource opens before the first change.
func newSSE(w http.ResponseWriter) (*sse, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	// Reconnect after a second rather than the browser's default three.
	if _, err := w.Write([]byte("retry: 1000\n\n")); err != nil {
		return nil, err
	}
	return s, s.rc.Flush()
}

// Send writes one event: its type, its id (a stream sequence, which the
// browser sends back as Last-Event-ID when it reconnects) and one line of
// JSON data. An empty event is a comment, a heartbeat.
func (s *sse) Send(event string, id uint64, data any) error {
	var buf bytes.Buffer
	if event == "" {
		buf.WriteString(": ping\n\n")
	} else {
		body, err := json.Marshal(data)
		if err != nil {
			return err
		}
		buf.WriteString("event: " + event + "\nid: " + strconv.FormatUint(id, 10) + "\ndata: ")
		buf.Write(body)
		buf.WriteString("\n\n")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)) // not every writer supports deadlines
	if _, err := s.w.Write(buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}

// boardSnapshot is the first event of a stream: every cell the filter
// selects, at a position.
type boardSnapshot struct {
	Position uint64     `json:"position"`
	Cells    []cellView `json:"cells"`
}

// streamFilter reads the stream's filter: the board's, except that no
// dates means every day.
func streamFilter(r *http.Request, now time.Time) (boardFilter, map[string]string) {
	q := r.URL.Query()
	f, problems := parseBoardFilter(q, now)
	if q.Get("from") == "" && q.Get("to") == "" {
		f.From, f.To = time.Time{}, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	return f, problems
}

// handleBoardStream serves GET /v1/board/stream: the board's cells as
// server-sent events, live. A refusal (a bad filter, no board read model)
// is an API answer, problem+json through web.Error, not a page. It subscribes to the board first, then sends a
// snapshot (event "snapshot", id = the position it reflects) unless the
// browser's Last-Event-ID shows it is already there, then each change of a
// selected cell (event "cell", id = its stream sequence), skipping those
// the snapshot already reflects. A subscriber the board drops for falling
// behind resubscribes and gets a fresh snapshot. The loop ends with the
// request's context; the subscription is cancelled on the way out.
func handleBoardStream(board Board, now func() time.Time, heartbeatEvery time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if board == nil {
			web.Error(w, r, capacity.Errorf(capacity.EUNAVAILABLE, "the board read model is not running"))
			return
		}
		f, problems := streamFilter(r, now())
		if len(problems) > 0 {
			web.Error(w, r, capacity.Errorf(capacity.EINVALID, "invalid filter: %s", joinProblems(problems)))
			return
		}
		ctx := r.Context()
		lastID, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)
		// Subscribe and read the board before the headers go out: once a
		// client sees the stream open, every later change reaches it.
		changes, cancel := board.Subscribe(ctx, streamBuffer)
		position, snap := snapshotOf(board, f, lastID)
		stream, err := newSSE(w)
		if err != nil {
			cancel()
			return
		}
		heartbeat := time.NewTicker(heartbeatEvery)
		defer heartbeat.Stop()
		for {
			if snap != nil {
				err = stream.Send("snapshot", position, snap)
			}
			if err == nil {
				err = follow(stream, changes, heartbeat.C, f, position, &lastID)
			}
			cancel()
			if err != nil || ctx.Err() != nil {
				return
			}
			changes, cancel = board.Subscribe(ctx, streamBuffer)
			position, snap = snapshotOf(board, f, lastID)
		}
	}
}

// snapshotOf returns the board's position and the selected cells, or nil
// cells when the client already has the board at that position (lastID).
func snapshotOf(board Board, f boardFilter, lastID uint64) (uint64, *boardSnapshot) {
	all, position := board.Cells(f.Region, f.Kind, "")
	if lastID != 0 && lastID == position {
		return position, nil
	}
	snap := &boardSnapshot{Position: position, Cells: []cellView{}}
	for _, c := range all {
		if f.match(c) {
			snap.Cells = append(snap.Cells, viewOfCell(c))
		}
	}
	return position, snap
}

// follow sends the changes after position until the subscription ends
// (nil: resubscribe) or a write fails (its error). lastID tracks the id of
// the last event sent.
func follow(stream *sse, changes <-chan views.BoardChange, heartbeat <-chan time.Time, f boardFilter, position uint64, lastID *uint64) error {
	*lastID = position
	for {
		select {
		case change, ok := <-changes:
			if !ok {
				return nil // dropped, or the request ended: the caller decides
			}
			if change.Seq <= position || !f.match(change.Cell) {
				continue
			}
			view := viewOfCell(change.Cell)
			view.Traceparent = change.Traceparent
			if err := stream.Send("cell", change.Seq, view); err != nil {
				return err
			}
			*lastID = change.Seq
		case <-heartbeat:
			if err := stream.Send("", 0, nil); err != nil {
				return err
			}
		}
	}
}
