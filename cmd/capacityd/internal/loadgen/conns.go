package loadgen

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// connPool keeps up to max keep-alive HTTP/1.1 connections to one host and
// runs each request on the caller's goroutine: write, flush, read the
// response. A connection is used by one request at a time and goes back to
// the pool once its response body has been read to the end.
type connPool struct {
	host   string // host:port to dial
	header string // the Host header
	dialer net.Dialer
	idle   chan *conn    // connections open and free
	slots  chan struct{} // a token per connection that may be opened
}

// conn is one connection with its buffers.
type conn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func newConnPool(base string, max int) *connPool {
	max = cmp.Or(max, 1)
	p := &connPool{idle: make(chan *conn, max), slots: make(chan struct{}, max),
		dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}
	if u, err := url.Parse(base); err == nil {
		p.header = u.Host
		p.host = u.Host
		if u.Port() == "" {
			p.host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	for range max {
		p.slots <- struct{}{}
	}
	return p
}

// get returns a free connection, opening one if fewer than max are open,
// else waiting for one to be put back.
func (p *connPool) get(ctx context.Context) (*conn, error) {
	select {
	case c := <-p.idle:
		return c, nil
	default:
	}
	select {
	case c := <-p.idle:
		return c, nil
	case <-p.slots:
		nc, err := p.dialer.DialContext(ctx, "tcp", p.host)
		if err != nil {
			p.slots <- struct{}{}
			return nil, err
		}
		return &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put gives a connection back, or closes it when it cannot be reused.
func (p *connPool) put(c *conn, reuse bool) {
	if reuse {
		c.nc.SetDeadline(time.Time{})
		p.idle <- c
		return
	}
	c.nc.Close()
	p.slots <- struct{}{}
}

// close closes the idle connections.
func (p *connPool) close() {
	for {
		select {
		case c := <-p.idle:
			c.nc.Close()
			p.slots <- struct{}{}
		default:
			return
		}
	}
}

// errHost means the client's base URL has no host to dial.
var errHost = errors.New("loadgen: no host in the base URL")

// roundTrip sends one request and returns its response; the caller reads
// the body (or not) and then calls done, which drains the rest and puts
// the connection back. The request must be answered within the context's
// deadline, or RequestTimeout.
func (p *connPool) roundTrip(ctx context.Context, method, path string, body []byte) (*http.Response, func(), error) {
	if p.host == "" {
		return nil, nil, errHost
	}
	c, err := p.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) }) // cancel: unblock now
	res, err := p.exchange(c, method, path, body)
	if err != nil {
		stop()
		p.put(c, false)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, nil, err
	}
	return res, func() {
		_, derr := io.Copy(io.Discard, res.Body)
		cancelled := !stop()
		p.put(c, derr == nil && !cancelled && !res.Close)
	}, nil
}

// exchange writes the request and reads the response's head.
func (p *connPool) exchange(c *conn, method, path string, body []byte) (*http.Response, error) {
	w := c.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(p.header)
	w.WriteString("\r\nUser-Agent: capacityd-bench\r\n")
	if body != nil {
		w.WriteString("Content-Type: application/json\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
		w.WriteString("\r\n\r\n")
		w.Write(body)
	} else {
		w.WriteString("\r\n")
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return res, nil
}
