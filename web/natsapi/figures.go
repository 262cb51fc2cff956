package natsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/web"
	"github.com/nats-io/nats.go/micro"
)

// OpFigures is the read models' own figures, for a check against a fresh
// fold of the stream (capacityd verify): capacityd.<region>.figures, body
// FiguresRequest, answer FiguresReply. Read only; added in service
// version 1.2.0.
const OpFigures = "figures"

// Figures is the read side's figures per pool (cmd/capacityd's read
// models). Errors are *capacity.Error values or internal.
type Figures interface {
	// Figures returns a page of the pools whose home is q.Home, by id,
	// with the positions read before them.
	Figures(ctx context.Context, q FiguresRequest) (FiguresReply, error)
}

// FiguresRequest asks for a page of the read models' pools of one home
// region, by pool id.
type FiguresRequest struct {
	Home  string    `json:"home"`            // the home region of the pools (required)
	After string    `json:"after,omitempty"` // the next of the previous page
	Limit int       `json:"limit,omitempty"` // default views.DefaultLimit, at most views.MaxLimit
	At    time.Time `json:"at,omitzero"`     // the time figures are taken at (lapsed holds free); default now
}

// FiguresReply is a page of pools as the read models of Region hold them.
// Positions were read before the pools: every event of the home region's
// stream at or below Positions[home] is in the figures.
type FiguresReply struct {
	Region    string            `json:"region"`
	At        time.Time         `json:"at"`
	Positions map[string]uint64 `json:"positions"`
	Pools     []PoolFigures     `json:"pools"`
	Next      string            `json:"next,omitempty"`
}

// PoolFigures is one pool of a FiguresReply: its figures at the reply's
// At, the highest sequence of its home stream applied to it (seq), and
// the reservation ids the lookup index holds for it.
type PoolFigures struct {
	Pool         string `json:"pool"`
	Home         string `json:"home"`
	Seq          uint64 `json:"seq"`
	Capacity     int    `json:"capacity"`
	Overbook     int    `json:"overbook"`
	Status       string `json:"status"`
	Version      uint64 `json:"version"`
	Held         int    `json:"held"`
	Confirmed    int    `json:"confirmed"`
	Available    int    `json:"available"`
	Reservations int    `json:"reservations"`
}

// PoolFiguresOf converts the read models' figures of a pool of home.
func PoolFiguresOf(home string, f views.PoolFigures) PoolFigures {
	v := f.View
	return PoolFigures{Pool: f.Pool, Home: home, Seq: f.Seq, Capacity: v.Capacity, Overbook: v.Overbook, Status: string(v.Status),
		Version: v.Version, Held: v.Held, Confirmed: v.Confirmed, Available: v.Available, Reservations: f.Reservations}
}

// Views converts a pool back to the read models' figures.
func (p PoolFigures) Views() views.PoolFigures {
	return views.PoolFigures{Pool: p.Pool, Seq: p.Seq, Reservations: p.Reservations, View: capacity.PoolView{
		ID: p.Pool, HomeRegion: p.Home, Capacity: p.Capacity, Overbook: p.Overbook, Status: capacity.Status(p.Status), Version: p.Version,
		Figures: capacity.Figures{Held: p.Held, Confirmed: p.Confirmed, Available: p.Available, OverCapacity: p.Available < 0},
	}}
}

func (s *Service) figures(ctx context.Context, _ []string, req micro.Request) (any, error) {
	var q FiguresRequest
	dec := json.NewDecoder(bytes.NewReader(req.Data()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return nil, capacity.Errorf(capacity.EINVALID, "figures: body must be {\"home\",\"after\"?,\"limit\"?,\"at\"?}: %v", err)
	}
	if err := web.CheckID("home", q.Home); err != nil {
		return nil, err
	}
	if q.After != "" {
		if err := web.CheckID("after", q.After); err != nil {
			return nil, err
		}
	}
	if q.Limit < 0 || q.Limit > views.MaxLimit {
		return nil, capacity.Errorf(capacity.EINVALID, "figures: limit must be 0..%d", views.MaxLimit)
	}
	if s.cfg.Figures == nil {
		return nil, capacity.Errorf(capacity.EUNAVAILABLE, "the read models are not running")
	}
	if q.At.IsZero() {
		q.At = s.cfg.Now()
	}
	return s.cfg.Figures.Figures(ctx, q)
}

// Figures asks the region's read models for a page of their figures.
func (c *Client) Figures(ctx context.Context, q FiguresRequest) (FiguresReply, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return FiguresReply{}, err
	}
	data, err := c.Request(ctx, OpFigures, nil, body, nil)
	if err != nil {
		return FiguresReply{}, err
	}
	var out FiguresReply
	err = json.Unmarshal(data, &out)
	return out, err
}
