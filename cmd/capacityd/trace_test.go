package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/web/natsapi"
	"github.com/nats-io/nats.go"
)

// A hold's W3C trace (traceparent over HTTP, or a NATS header) reaches the
// commit's stored message header, the projection and the board's changes.
func TestTraceReachesStreamAndProjection(t *testing.T) {
	a := startTest(t)
	changes, unsubscribe := a.readModels.board.Subscribe(context.Background(), 1024)
	defer unsubscribe()
	starts := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour)
	def := `{"region":"north","kind":"delivery","starts_at":"` + starts.Format(time.RFC3339) + `","ends_at":"` + starts.Add(time.Hour).Format(time.RFC3339) + `","capacity":10}`
	if code, body := call(t, "PUT", a.HTTPURL+"/v1/pools/t1", def); code != http.StatusCreated {
		t.Fatalf("define: %d %v", code, body)
	}

	const httpTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", a.HTTPURL+"/v1/pools/t1/holds", strings.NewReader(`{"reservation_id":"traced","quantity":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+httpTrace+"-00f067aa0ba902b7-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("hold: %d", res.StatusCode)
	}

	const natsTrace = "0af7651916cd43dd8448eb211c80319c"
	nc, err := nats.Connect(a.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, err = natsapi.NewClient(nc, "local").Request(context.Background(), natsapi.OpHold, []string{"t1"},
		[]byte(`{"reservation_id":"traced-nats","quantity":1}`), nats.Header{"traceparent": {"00-" + natsTrace + "-b7ad6b7169203331-01"}})
	if err != nil {
		t.Fatalf("hold over NATS: %v", err)
	}

	// The stream: each commit's message carries its caller's trace.
	var stored []string
	for rec, err := range a.store.Read(context.Background(), "t1", 0) {
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, rec.Header[streams.HeaderTraceparent])
	}
	if len(stored) != 3 || stored[0] != "" || !strings.Contains(stored[1], httpTrace) || !strings.Contains(stored[2], natsTrace) {
		t.Fatalf("traceparent headers of the pool's messages = %q, want none, then %s, then %s", stored, httpTrace, natsTrace)
	}

	// The projection passes it on to the board's changes (the SSE feed).
	want := map[string]bool{httpTrace: true, natsTrace: true}
	deadline := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case c := <-changes:
			for id := range want {
				if strings.Contains(c.Traceparent, id) {
					delete(want, id)
				}
			}
		case <-deadline:
			t.Fatalf("board changes never carried the traces %v", fmt.Sprint(want))
		}
	}
}
