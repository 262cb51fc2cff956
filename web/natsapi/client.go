package natsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Client calls the service of one region over NATS request/reply. It is
// safe for concurrent use; capacityd bench drives holds with it, and a
// region forwards writes for pools it does not write with it.
type Client struct {
	nc     *nats.Conn
	region string
}

// NewClient returns a client of the service answering for region on nc.
func NewClient(nc *nats.Conn, region string) *Client { return &Client{nc: nc, region: region} }

// Error is a refusal by the service: Status is the HTTP status the HTTP
// API would answer, Code the problem code (e.g. insufficient-capacity),
// Problem the problem+json document.
type Error struct {
	Status  int
	Code    string
	Detail  string
	Problem json.RawMessage
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("capacity: %d %s: %s", e.Status, e.Code, e.Detail)
}

// Request sends body to an operation with its subject tokens and returns
// the reply's body; a refusal is an *Error, a transport failure (no
// responders, timeout) nats's own error. headers may be nil.
func (c *Client) Request(ctx context.Context, op string, tokens []string, body []byte, headers nats.Header) ([]byte, error) {
	msg := &nats.Msg{Subject: Subject(c.region, op, tokens...), Data: body, Header: headers}
	reply, err := c.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return nil, err
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		status, _ := strconv.Atoi(code)
		e := &Error{Status: status, Code: reply.Header.Get(micro.ErrorHeader), Problem: reply.Data}
		var p struct {
			Detail string `json:"detail"`
		}
		if json.Unmarshal(reply.Data, &p) == nil {
			e.Detail = p.Detail
		}
		return nil, e
	}
	return reply.Data, nil
}

// HoldRequest is the body of a hold, as POST /v1/pools/{pool}/holds.
type HoldRequest struct {
	ReservationID string `json:"reservation_id"`
	Quantity      int    `json:"quantity"`
	TTL           string `json:"ttl,omitempty"`
}

// Reservation is the reservation object of the API.
type Reservation struct {
	ReservationID string    `json:"reservation_id"`
	Pool          string    `json:"pool"`
	Quantity      int       `json:"quantity"`
	Status        string    `json:"status"`
	ExpiresAt     time.Time `json:"expires_at"`
	Version       uint64    `json:"version"`
	HeldAt        time.Time `json:"held_at"`
	TTL           string    `json:"ttl"`
	PoolVersion   uint64    `json:"pool_version,omitempty"`
}

// Pool is the pool object of the API.
type Pool struct {
	ID           string    `json:"id"`
	Region       string    `json:"region"`
	Kind         string    `json:"kind"`
	StartsAt     time.Time `json:"starts_at"`
	EndsAt       time.Time `json:"ends_at"`
	Capacity     int       `json:"capacity"`
	Held         int       `json:"held"`
	Confirmed    int       `json:"confirmed"`
	Available    int       `json:"available"`
	Status       string    `json:"status"`
	Version      uint64    `json:"version"`
	Overbook     int       `json:"overbook"`
	OverCapacity bool      `json:"over_capacity"`
}

// call sends in (nil: no body) and decodes the reply into out.
func call[T any](ctx context.Context, c *Client, op string, tokens []string, in any, headers nats.Header) (T, error) {
	var out T
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return out, err
		}
	}
	data, err := c.Request(ctx, op, tokens, body, headers)
	if err != nil {
		return out, err
	}
	return out, json.Unmarshal(data, &out)
}

// Hold holds units of a pool.
func (c *Client) Hold(ctx context.Context, pool string, req HoldRequest) (Reservation, error) {
	return call[Reservation](ctx, c, OpHold, []string{pool}, req, nil)
}

// Confirm confirms a hold.
func (c *Client) Confirm(ctx context.Context, pool, id string) (Reservation, error) {
	return call[Reservation](ctx, c, OpConfirm, []string{pool, id}, nil, nil)
}

// Release gives a reservation's units back.
func (c *Client) Release(ctx context.Context, pool, id string) (Reservation, error) {
	return call[Reservation](ctx, c, OpRelease, []string{pool, id}, nil, nil)
}

// Pool reads a pool, strongly consistent.
func (c *Client) Pool(ctx context.Context, pool string) (Pool, error) {
	return call[Pool](ctx, c, OpPool, []string{pool}, nil, nil)
}

// Reservation reads one reservation of a pool.
func (c *Client) Reservation(ctx context.Context, pool, id string) (Reservation, error) {
	return call[Reservation](ctx, c, OpReservation, []string{pool, id}, nil, nil)
}

// Define defines a pool; body is the JSON of PUT /v1/pools/{pool}.
func (c *Client) Define(ctx context.Context, pool string, body json.RawMessage) (Pool, error) {
	return call[Pool](ctx, c, OpDefine, []string{pool}, body, nil)
}

// Change changes a pool; body is the JSON of PATCH /v1/pools/{pool};
// ifVersion, when not 0, is sent as If-Match.
func (c *Client) Change(ctx context.Context, pool string, body json.RawMessage, ifVersion uint64) (Pool, error) {
	var h nats.Header
	if ifVersion != 0 {
		h = nats.Header{"If-Match": {`"` + strconv.FormatUint(ifVersion, 10) + `"`}}
	}
	return call[Pool](ctx, c, OpChange, []string{pool}, body, h)
}
