package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/views"
)

// The request and response bodies of the HTTP API, for the other
// interfaces that speak them (the NATS service in web/natsapi): one
// decoder, one validation and one problem mapping, so a body means the same
// on every interface and a refusal carries the same problem type.

// CheckID returns the invalid-request problem of an id (a path parameter
// over HTTP, a subject token over NATS) that capacity.ValidID refuses.
func CheckID(name, id string) error {
	if capacity.ValidID(id) {
		return nil
	}
	problem := idProblemOf(id)
	return invalid(fmt.Sprintf("%s id %s", name, problem), map[string]string{name: problem})
}

// DecodeHold reads the body of a hold (POST /v1/pools/{pool}/holds).
func DecodeHold(ctx context.Context, data []byte) (capacity.Hold, error) {
	if h, ok := holdFast(data); ok {
		return h, nil
	}
	req, err := decodeFrom[holdRequest](ctx, bytes.NewReader(data))
	if err != nil {
		return capacity.Hold{}, err
	}
	ttl, _ := req.ttl()
	return capacity.Hold{ReservationID: req.ReservationID, Quantity: *req.Quantity, TTL: ttl}, nil
}

// DecodeDefine reads the body of a pool definition (PUT /v1/pools/{pool}).
func DecodeDefine(ctx context.Context, pool string, data []byte) (capacity.DefinePool, error) {
	req, err := decodeFrom[putPoolRequest](ctx, bytes.NewReader(data))
	if err != nil {
		return capacity.DefinePool{}, err
	}
	if req.ID != nil && *req.ID != pool {
		return capacity.DefinePool{}, invalid("id in body and path differ", map[string]string{"id": "must equal the pool id in the path"})
	}
	return req.command(pool), nil
}

// DecodeChange reads the body of a pool change (PATCH /v1/pools/{pool})
// and its If-Match values.
func DecodeChange(ctx context.Context, data []byte, ifMatch []string) (capacity.ChangePool, error) {
	ifVersion, err := parseIfMatch(ifMatch)
	if err != nil {
		return capacity.ChangePool{}, err
	}
	req, err := decodeFrom[patchPoolRequest](ctx, bytes.NewReader(data))
	if err != nil {
		return capacity.ChangePool{}, err
	}
	cmd := capacity.ChangePool{Capacity: req.Capacity, Overbook: req.Overbook, IfVersion: ifVersion}
	if req.Status != nil {
		cmd.Status = capacity.Status(*req.Status)
	}
	return cmd, nil
}

// DecodeEmpty accepts the body of confirm and release: nothing, white
// space or an empty JSON object.
func DecodeEmpty(ctx context.Context, data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	_, err := decodeFrom[emptyRequest](ctx, bytes.NewReader(data))
	return err
}

// availabilityRequest is GET /v1/availability's query as a JSON object.
type availabilityRequest struct {
	Region      *string `json:"region"`
	Kind        *string `json:"kind"`
	From        *string `json:"from"`
	To          *string `json:"to"`
	PageToken   *string `json:"page_token"`
	MinPosition *uint64 `json:"min_position"`
	Limit       *uint64 `json:"limit"`
}

// Valid implements validator; availabilityQuery checks the values.
func (availabilityRequest) Valid(context.Context) map[string]string { return nil }

// DecodeAvailability reads GET /v1/availability's query parameters given
// as one JSON object ({"region","kind","from","to","min_position","limit",
// "page_token"}, all optional; an empty body is no filter).
func DecodeAvailability(ctx context.Context, data []byte) (views.AvailabilityQuery, views.MinPositions, error) {
	q := url.Values{}
	if len(bytes.TrimSpace(data)) > 0 {
		req, err := decodeFrom[availabilityRequest](ctx, bytes.NewReader(data))
		if err != nil {
			return views.AvailabilityQuery{}, nil, err
		}
		for name, v := range map[string]*string{"region": req.Region, "kind": req.Kind, "from": req.From, "to": req.To, "page_token": req.PageToken} {
			if v != nil {
				q.Set(name, *v)
			}
		}
		for name, v := range map[string]*uint64{"min_position": req.MinPosition, "limit": req.Limit} {
			if v != nil {
				q.Set(name, strconv.FormatUint(*v, 10))
			}
		}
	}
	return availabilityQuery(q)
}

// PoolBody is the pool object of the API.
func PoolBody(v capacity.PoolView) any { return poolOf(v) }

// ReservationBody is the reservation object of the API as seen at now.
func ReservationBody(pool string, r capacity.Reservation, now time.Time) any {
	return reservationOf(pool, r, now)
}

// ResultBody is the answer to a write on a reservation: the reservation
// with the pool's version after the write.
func ResultBody(pool string, res pools.Result, now time.Time) (any, error) {
	if res.Reservation == nil {
		return nil, fmt.Errorf("web: write result without its reservation")
	}
	out := reservationOf(pool, *res.Reservation, now)
	out.PoolVersion = res.Pool.Version
	return out, nil
}

// AvailabilityBody is the answer of GET /v1/availability.
func AvailabilityBody(page views.AvailabilityPage) any {
	out := availabilityJSON{Position: page.Position, Pools: make([]poolJSON, len(page.Pools)), NextPageToken: page.Next, Positions: page.Positions.Regions}
	for i, v := range page.Pools {
		out.Pools[i] = poolOf(v)
	}
	return out
}

// Problem is an error as the API answers it: its HTTP status, its problem
// code (the last part of its type), and the problem+json document. An
// internal error's detail is never shown; Internal says it was one, for
// the caller to log.
type Problem struct {
	Status   int
	Code     string
	Body     []byte
	Internal bool
}

// ProblemOf maps err as the HTTP API does; instance names what was asked
// (a path, a subject).
func ProblemOf(err error, instance string) Problem {
	p := problemOf(err)
	p.Instance = instance
	body, _ := json.Marshal(p) // plain strings and ints: cannot fail
	return Problem{Status: p.Status, Code: strings.TrimPrefix(p.Type, ProblemTypeBase), Body: body, Internal: p.Status == 500}
}

// holdFast parses a hold body in the one form clients mostly send,
// {"reservation_id":"…","quantity":N} with an optional ,"ttl":"…", no
// spaces, no escapes, and returns the command if it is valid; anything
// else is false, left to the strict decoder (which gives the problems).
// Decoding with encoding/json was an eighth of a hold's CPU over NATS.
func holdFast(data []byte) (capacity.Hold, bool) {
	const idKey, qtyKey, ttlKey = `{"reservation_id":"`, `","quantity":`, `,"ttl":"`
	s := string(data)
	rest, ok := strings.CutPrefix(s, idKey)
	if !ok {
		return capacity.Hold{}, false
	}
	id, rest, ok := strings.Cut(rest, `"`)
	if !ok || !capacity.ValidID(id) {
		return capacity.Hold{}, false
	}
	if rest, ok = strings.CutPrefix(rest, qtyKey[1:]); !ok {
		return capacity.Hold{}, false
	}
	end := 0
	for end < len(rest) && end < 8 && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	if end == 0 || rest[0] == '0' {
		return capacity.Hold{}, false
	}
	quantity, _ := strconv.Atoi(rest[:end])
	rest = rest[end:]
	h := capacity.Hold{ReservationID: id, Quantity: quantity, TTL: capacity.DefaultTTL}
	if ttl, ok := strings.CutPrefix(rest, ttlKey); ok {
		value, tail, ok := strings.Cut(ttl, `"`)
		if !ok || strings.ContainsRune(value, '\\') {
			return capacity.Hold{}, false
		}
		d, err := time.ParseDuration(value)
		if err != nil {
			return capacity.Hold{}, false
		}
		h.TTL, rest = d, tail
	}
	if rest != "}" || h.Validate() != nil {
		return capacity.Hold{}, false
	}
	return h, true
}
