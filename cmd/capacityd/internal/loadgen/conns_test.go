package loadgen

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientConnections: the lean client keeps connections alive across
// requests (one per concurrent caller at most), sends the body with its
// length, reads fixed-length and chunked answers, opens a new connection
// after the server closed one, and a request whose context ends while the
// server holds it returns the context's error at once.
func TestClientConnections(t *testing.T) {
	var opened atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			if r.Header.Get("Content-Type") != "application/json" || r.ContentLength != int64(len(b)) {
				http.Error(w, "bad request head", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"echo":` + string(b) + `}`))
		case "/chunked":
			w.Write([]byte(`{"echo":`))
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write([]byte(`"x"}`))
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte(`{"echo":"closing"}`))
		case "/slow":
			<-release
		case "/problem":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"type":"https://capacityd.dev/problems/insufficient-capacity","status":409}`))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	defer close(release)
	c := NewClient(srv.URL, 4)
	defer c.Close()
	ctx := context.Background()
	var out struct {
		Echo any `json:"echo"`
	}
	for range 20 {
		if o := c.Do(ctx, "hold", "POST", "/echo", []byte(`{"n":1}`), &out); o.Err != nil || o.Status != 201 || out.Echo == nil {
			t.Fatalf("echo: %+v %+v", o, out)
		}
	}
	if got := opened.Load(); got != 1 {
		t.Fatalf("20 requests in a row opened %d connections, want 1", got)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if o := c.Do(ctx, "read", "GET", "/chunked", nil, nil); o.Err != nil || o.Status != 200 {
				t.Errorf("chunked: %+v", o)
			}
		})
	}
	wg.Wait()
	if got := opened.Load(); got > 4 {
		t.Fatalf("16 concurrent requests opened %d connections in all, want at most 4", got)
	}
	if o := c.Do(ctx, "hold", "POST", "/problem", []byte(`{}`), nil); o.Status != 409 || o.Problem != "insufficient-capacity" {
		t.Fatalf("problem: %+v", o)
	}
	if o := c.Do(ctx, "read", "GET", "/close", nil, &out); o.Err != nil || out.Echo != "closing" {
		t.Fatalf("close: %+v", o)
	}
	for range 4 { // every connection may be the closed one's successor
		if o := c.Do(ctx, "read", "GET", "/echo", []byte(`1`), nil); o.Err != nil || o.Status != 201 {
			t.Fatalf("after a closed connection: %+v", o)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	o := c.Do(cctx, "hold", "POST", "/slow", []byte(`{}`), nil)
	if o.Err == nil || transportKind(o.Err) != "timeout" || time.Since(begin) > 5*time.Second {
		t.Fatalf("slow request with a 100 ms deadline: %+v after %v", o, time.Since(begin))
	}
	if o := c.Do(ctx, "hold", "POST", "/echo", []byte(`2`), nil); o.Err != nil || o.Status != 201 {
		t.Fatalf("after a timed-out request: %+v", o)
	}
}
