package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// RequestTimeout bounds one request; a request that takes longer counts as
// a "timeout" error.
const RequestTimeout = 30 * time.Second

// Client is the HTTP client every load uses, the service's and the
// ceilings' alike: keep-alive connections, one per load client, so that
// connection setup is not part of any figure.
//
// Loads go through a lean HTTP/1.1 client of its own (conns.go), not
// net/http's Transport: a request is written and its response read on the
// caller's goroutine, where the Transport hands each request to a writing
// goroutine and each response back from a reading one. The bench runs on
// the same cores as the service it measures, so every microsecond the
// load generator spends is taken from the service; the Transport cost
// about as much CPU per request as the service's whole HTTP layer.
// The request head is written by hand (method, path, Host, the body's
// type and length); responses are parsed by net/http's ReadResponse, so
// chunked bodies and Connection: close are handled as net/http would.
// Reads of /metrics use net/http's client.
type Client struct {
	base      string
	conns     *connPool
	http      *http.Client
	transport *http.Transport
}

// NewClient returns a client for the service at base (e.g.
// http://127.0.0.1:8080) keeping up to conns connections open.
func NewClient(base string, conns int) *Client {
	t := &http.Transport{
		Proxy:               nil, // loopback: never through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	base = strings.TrimSuffix(base, "/")
	return &Client{base: base, conns: newConnPool(base, conns), http: &http.Client{Transport: t, Timeout: RequestTimeout}, transport: t}
}

// Close closes the idle connections.
func (c *Client) Close() {
	c.conns.close()
	c.transport.CloseIdleConnections()
}

// Base returns the URL the client targets.
func (c *Client) Base() string { return c.base }

// Do sends one request and returns its outcome. A 2xx body is decoded into
// out when out is not nil, else discarded; a problem body gives the
// outcome's Problem.
func (c *Client) Do(ctx context.Context, op, method, path string, body []byte, out any) Outcome {
	res, done, err := c.conns.roundTrip(ctx, method, path, body)
	if err != nil {
		return Outcome{Op: op, Err: err}
	}
	o := Outcome{Op: op, Status: res.StatusCode}
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300 && out != nil:
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			o.Err = fmt.Errorf("decoding %s %s: %w", method, path, err)
		}
	case res.StatusCode >= 300:
		var p struct {
			Type string `json:"type"`
		}
		if json.NewDecoder(res.Body).Decode(&p) == nil {
			o.Problem = p.Type[strings.LastIndexByte(p.Type, '/')+1:]
		}
	}
	done() // drains the body so the connection is reused
	return o
}

// transportKind names a transport error for the error counts.
func transportKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection-refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection-reset"
	case strings.Contains(err.Error(), "decoding "):
		return "bad-response"
	}
	return "transport"
}
