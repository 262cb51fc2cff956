package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// event is one server-sent event as read off the wire.
type event struct {
	Type, ID, Data string
}

// eventReader reads server-sent events from a response body.
type eventReader struct {
	t      testing.TB
	events chan event
}

// openStream opens the board stream and returns its events; the stream
// closes when the test ends.
func openStream(t testing.TB, base, query, lastEventID string) *eventReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/board/stream?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("stream: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	r := &eventReader{t: t, events: make(chan event, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(r.events)
		sc := bufio.NewScanner(resp.Body)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Type != "" {
					r.events <- ev
				}
				ev = event{}
			case strings.HasPrefix(line, "event: "):
				ev.Type = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				ev.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				ev.Data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return r
}

// next returns the next event, failing the test after a few seconds.
func (r *eventReader) next() event {
	r.t.Helper()
	select {
	case ev, ok := <-r.events:
		if !ok {
			r.t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		r.t.Fatal("no event within 5s")
	}
	return event{}
}

func TestBoardStream(t *testing.T) {
	s := newStack(t)
	srv := httptest.NewServer(s.handler)
	t.Cleanup(srv.Close) // after the streams' own cleanups, which end them
	tue := epoch.Add(26 * time.Hour)
	s.define(t, "north-a", "north", "delivery", tue, 4)
	v := s.define(t, "south-a", "south", "delivery", tue, 4)
	s.caughtUp(t, v.Version)

	stream := openStream(t, srv.URL, "region=north", "")
	ev := stream.next()
	if ev.Type != "snapshot" || ev.ID != fmt.Sprint(v.Version) {
		t.Fatalf("first event = %+v, want a snapshot at %d", ev, v.Version)
	}
	var snap boardSnapshot
	if err := json.Unmarshal([]byte(ev.Data), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Cells) != 1 || snap.Cells[0].Region != "north" || snap.Cells[0].Label != "0%" || snap.Position != v.Version {
		t.Fatalf("snapshot = %+v, want one north cell at 0%%", snap)
	}

	s.hold(t, "south-a", "r0", 1) // filtered out
	held := s.hold(t, "north-a", "r1", 3)
	ev = stream.next()
	for ev.Type == "" {
		ev = stream.next()
	}
	if ev.Type != "cell" || ev.ID != fmt.Sprint(held.Version) {
		t.Fatalf("event = %+v, want the cell at %d", ev, held.Version)
	}
	var cell cellView
	if err := json.Unmarshal([]byte(ev.Data), &cell); err != nil {
		t.Fatal(err)
	}
	if cell.Key != snap.Cells[0].Key || cell.Label != "75%" || cell.Figures != "3 / 4" || cell.Level != "u4" {
		t.Errorf("cell = %+v, want north at 75%%", cell)
	}

	t.Run("resume at the position: no snapshot", func(t *testing.T) {
		s.caughtUp(t, held.Version)
		resumed := openStream(t, srv.URL, "region=north", fmt.Sprint(held.Version))
		next := s.hold(t, "north-a", "r2", 1)
		ev := resumed.next()
		if ev.Type != "cell" || ev.ID != fmt.Sprint(next.Version) {
			t.Fatalf("first event after resuming = %+v, want the cell at %d", ev, next.Version)
		}
	})
	t.Run("resume behind: fresh snapshot", func(t *testing.T) {
		resumed := openStream(t, srv.URL, "region=north", "1")
		if ev := resumed.next(); ev.Type != "snapshot" || !strings.Contains(ev.Data, `"label":"100%"`) {
			t.Fatalf("first event = %+v, want a snapshot with the cell full", ev)
		}
	})
	t.Run("date filter", func(t *testing.T) {
		other := openStream(t, srv.URL, "from=2030-04-01&to=2030-04-07", "")
		if ev := other.next(); ev.Type != "snapshot" || !strings.Contains(ev.Data, `"cells":[]`) {
			t.Fatalf("snapshot = %+v, want no cells", ev)
		}
	})
	t.Run("bad filter", func(t *testing.T) {
		res, err := http.Get(srv.URL + "/v1/board/stream?from=soon")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", res.StatusCode)
		}
	})
}

// TestBoardStreamEndsWithRequest checks that the stream's handler returns
// when its client goes away: httptest.Server.Close waits for every handler.
func TestBoardStreamEndsWithRequest(t *testing.T) {
	s := newStack(t)
	srv := httptest.NewServer(s.handler)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/board/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line = %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		srv.Close()
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream handler did not return after its client went away")
	}
}
