package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Kind is what an operation does.
type Kind string

// Operation kinds of the traffic.
const (
	KindHold    Kind = "hold"
	KindConfirm Kind = "confirm"
	KindRelease Kind = "release"
	KindRead    Kind = "read" // GET the pool: its counters
	// KindExtend gives a live hold a new deadline (Op.TTL from now).
	KindExtend Kind = "extend"
	// Bookings: one operation over every pool of Op.Items, all or nothing;
	// the booking id is Op.ReservationID and the reservation's id in each
	// of its pools.
	KindBook        Kind = "book"
	KindBookConfirm Kind = "book-confirm"
	KindBookRelease Kind = "book-release"
	KindBookExtend  Kind = "book-extend"
	// KindLapse is not a client's: the moment the pool's recorded time
	// reached a deadline (Op.At), lapsing every hold due by then; added to
	// the history by the check (see LapseOps).
	KindLapse Kind = "lapse"
)

// Outcome is how an operation ended, as far as its client knows.
type Outcome string

// Outcomes.
const (
	OK       Outcome = "ok"       // 2xx
	Rejected Outcome = "rejected" // 4xx with a problem type: nothing changed
	Unknown  Outcome = "unknown"  // timeout, connection lost, 5xx: may or may not have happened
)

// ProblemTypeBase prefixes every problem type (web.ProblemTypeBase; not
// imported, the contract is the HTTP API).
const ProblemTypeBase = "https://capacityd.dev/problems/"

// Op is one recorded operation. Call and Return are nanoseconds since the
// recorder started, from one monotonic clock.
type Op struct {
	Client        int    `json:"client"`
	Target        int    `json:"target"` // which service instance was asked
	Kind          Kind   `json:"kind"`
	Pool          string `json:"pool"`
	ReservationID string `json:"reservation_id,omitempty"`
	// Quantity of a hold; of a confirm, the units to confirm (0: all).
	Quantity int `json:"quantity,omitempty"`
	// Items are a booking's pools (every booking kind); Pool is the first.
	Items []Item `json:"items,omitempty"`
	// TTL of an extend.
	TTL     string  `json:"ttl,omitempty"`
	Call    int64   `json:"call"`
	Return  int64   `json:"return"`
	Outcome Outcome `json:"outcome"`
	Status  int     `json:"status,omitempty"`
	Problem string  `json:"problem,omitempty"` // problem code, e.g. insufficient-capacity
	// ProblemPool is the pool a refusal names (a booking's first pool short).
	ProblemPool string `json:"problem_pool,omitempty"`
	Err         string `json:"err,omitempty"`
	// Read results (KindRead, OK).
	Capacity  int `json:"capacity,omitempty"`
	Held      int `json:"held,omitempty"`
	Confirmed int `json:"confirmed,omitempty"`
	// ResStatus is the reservation's (or booking's) status in a write's answer.
	ResStatus string `json:"res_status,omitempty"`
	// Position is a booking's position in its answer (a min_position).
	Position uint64 `json:"position,omitempty"`
	// Version is the pool's version in an acknowledged answer: of a read,
	// the stream sequence of the pool's last event it reflects; of a
	// write, the sequence its answer names (its event's, when it wrote).
	Version uint64 `json:"version,omitempty"`
	// Times in the pool's recorded time, which no client sees: set by the
	// check from the stream. A hold's At is the time it was decided at and
	// ExpiresAt its deadline (the Held event's); a lapse's At is the
	// deadline the pool's time reaches, Lapses the holds the stream shows
	// lapsing there, and LapseSeq its place among the pool's lapses in
	// deadline order (0, 1, ...).
	// A booking's items carry the At of their own pool (each part is
	// decided at its pool's time) and share ExpiresAt; an extend's At and
	// ExpiresAt are its Extended event's.
	At        time.Time `json:"at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Lapses    []string  `json:"lapses,omitempty"`
	LapseSeq  int       `json:"lapse_seq,omitempty"`
}

// Item is one pool's part of a booking.
type Item struct {
	Pool     string    `json:"pool"`
	Quantity int       `json:"quantity"`
	At       time.Time `json:"at,omitzero"` // set by the check: the part's Held event's
}

// Pools returns the pools an operation touches.
func (op Op) Pools() []string {
	if len(op.Items) == 0 {
		return []string{op.Pool}
	}
	out := make([]string, len(op.Items))
	for i, it := range op.Items {
		out[i] = it.Pool
	}
	return out
}

// IsBooking reports whether op is an operation of a booking.
func (op Op) IsBooking() bool {
	switch op.Kind {
	case KindBook, KindBookConfirm, KindBookRelease, KindBookExtend:
		return true
	}
	return false
}

// Recorder collects the operations of every client. Each client appends to
// its own slice from its own goroutine; History is read after they stop.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   map[int][]Op
}

// NewRecorder starts the clock.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now(), ops: make(map[int][]Op)}
}

// Now is the recorder's clock: nanoseconds since it started (monotonic).
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Add records a finished operation.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	r.ops[op.Client] = append(r.ops[op.Client], op)
	r.mu.Unlock()
}

// History returns every client's operations, by client id.
func (r *Recorder) History() map[int][]Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int][]Op, len(r.ops))
	for c, ops := range r.ops {
		out[c] = append([]Op(nil), ops...)
	}
	return out
}

// All returns every operation of every client.
func (r *Recorder) All() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []Op
	for _, ops := range r.ops {
		all = append(all, ops...)
	}
	return all
}

// Client talks to one capacityd over HTTP and classifies each answer.
type Client struct {
	HTTP    *http.Client
	BaseURL string
}

// NewClient returns a client whose requests time out after timeout.
func NewClient(baseURL string, timeout time.Duration) *Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	return &Client{HTTP: &http.Client{Transport: tr, Timeout: timeout}, BaseURL: baseURL}
}

// Close drops the client's idle connections.
func (c *Client) Close() { c.HTTP.CloseIdleConnections() }

// Response is an answer, classified.
type Response struct {
	Status      int
	Header      http.Header
	Body        []byte
	Outcome     Outcome
	Problem     string // problem code of a 4xx/5xx problem+json answer
	ProblemPool string // the pool the problem names, if any
	ProblemJSON bool   // the answer was application/problem+json with a type
	Err         error  // transport error (outcome unknown)
}

// problemDoc is an RFC 9457 problem.
type problemDoc struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Pool   string `json:"pool"`
}

// Do sends a request with an optional JSON body and classifies the answer:
// 2xx ok; 4xx with a problem type rejected; anything else unknown.
func (c *Client) Do(ctx context.Context, method, path string, body any, header http.Header) Response {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return Response{Outcome: Unknown, Err: err}
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return Response{Outcome: Unknown, Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Response{Outcome: Unknown, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	r := Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
	if err != nil {
		r.Outcome, r.Err = Unknown, fmt.Errorf("reading body: %w", err)
		return r
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/problem+json" {
		var p problemDoc
		if json.Unmarshal(data, &p) == nil && strings.HasPrefix(p.Type, ProblemTypeBase) {
			r.ProblemJSON, r.Problem, r.ProblemPool = true, strings.TrimPrefix(p.Type, ProblemTypeBase), p.Pool
		}
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		r.Outcome = OK
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && r.ProblemJSON:
		r.Outcome = Rejected
	default:
		r.Outcome = Unknown
		r.Err = fmt.Errorf("status %d: %s", resp.StatusCode, truncate(data, 200))
	}
	return r
}

// Decode unmarshals the answer's body.
func (r Response) Decode(v any) error {
	if r.Err != nil {
		return r.Err
	}
	return json.Unmarshal(r.Body, v)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// PoolDoc is the pool object of the API.
type PoolDoc struct {
	ID        string    `json:"id"`
	Region    string    `json:"region"`
	Kind      string    `json:"kind"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	Capacity  int       `json:"capacity"`
	Held      int       `json:"held"`
	Confirmed int       `json:"confirmed"`
	Available int       `json:"available"`
	Status    string    `json:"status"`
	Version   uint64    `json:"version"`
}

// ReservationDoc is the reservation object of the API.
type ReservationDoc struct {
	ReservationID string    `json:"reservation_id"`
	Pool          string    `json:"pool"`
	Quantity      int       `json:"quantity"`
	Status        string    `json:"status"`
	ExpiresAt     time.Time `json:"expires_at"`
	Version       uint64    `json:"version"`
}

// BookingDoc is the booking object of the API.
type BookingDoc struct {
	BookingID string `json:"booking_id"`
	Status    string `json:"status"`
	Position  uint64 `json:"position"`
}

// BookRequest is the body of POST /v1/bookings.
type BookRequest struct {
	BookingID string            `json:"booking_id"`
	Items     []BookRequestItem `json:"items"`
	TTL       string            `json:"ttl,omitempty"`
}

// BookRequestItem is one pool of a BookRequest.
type BookRequestItem struct {
	Pool     string `json:"pool"`
	Quantity int    `json:"quantity"`
}

// PoolDefinition is the body of PUT /v1/pools/{pool}.
type PoolDefinition struct {
	Region   string `json:"region"`
	Kind     string `json:"kind"`
	StartsAt string `json:"starts_at"`
	EndsAt   string `json:"ends_at"`
	Capacity int    `json:"capacity"`
}

// HoldRequest is the body of POST /v1/pools/{pool}/holds.
type HoldRequest struct {
	ReservationID string `json:"reservation_id"`
	Quantity      int    `json:"quantity"`
	TTL           string `json:"ttl,omitempty"`
}

// errNotOK describes an answer that should have been 2xx.
func errNotOK(what string, r Response) error {
	if r.Err != nil {
		return fmt.Errorf("%s: %w", what, r.Err)
	}
	return fmt.Errorf("%s: status %d: %s", what, r.Status, truncate(r.Body, 300))
}

// DefinePool defines a pool (201 or 200).
func (c *Client) DefinePool(ctx context.Context, pool string, def PoolDefinition) error {
	r := c.Do(ctx, http.MethodPut, "/v1/pools/"+pool, def, nil)
	if r.Outcome != OK {
		return errNotOK("PUT pool "+pool, r)
	}
	return nil
}

// GetPool reads a pool.
func (c *Client) GetPool(ctx context.Context, pool string) (PoolDoc, error) {
	var p PoolDoc
	r := c.Do(ctx, http.MethodGet, "/v1/pools/"+pool, nil, nil)
	if r.Outcome != OK {
		return p, errNotOK("GET pool "+pool, r)
	}
	return p, r.Decode(&p)
}

// GetReservation reads a reservation; found is false on 404.
func (c *Client) GetReservation(ctx context.Context, pool, id string) (res ReservationDoc, found bool, err error) {
	r := c.Do(ctx, http.MethodGet, "/v1/pools/"+pool+"/reservations/"+id, nil, nil)
	switch {
	case r.Outcome == Rejected && r.Problem == "not-found":
		return res, false, nil
	case r.Outcome != OK:
		return res, false, errNotOK("GET reservation "+pool+"/"+id, r)
	}
	return res, true, r.Decode(&res)
}
