package natsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/web"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
)

// ServiceName is the micro service's name, for `nats micro info capacity`.
const ServiceName = "capacity"

// Version is the service's version as micro reports it.
const Version = "1.2.0"

// SubjectRoot is the first token of every subject of the service.
const SubjectRoot = "capacityd"

// Operations, the third token of a subject.
const (
	OpHold         = "hold"         // capacityd.<region>.hold.<pool>, body as POST /v1/pools/{pool}/holds
	OpConfirm      = "confirm"      // capacityd.<region>.confirm.<pool>.<id>, body none or {}
	OpRelease      = "release"      // capacityd.<region>.release.<pool>.<id>, body none or {}
	OpPool         = "pool"         // capacityd.<region>.pool.<pool>
	OpReservation  = "reservation"  // capacityd.<region>.reservation.<pool>.<id>
	OpDefine       = "define"       // capacityd.<region>.define.<pool>, body as PUT /v1/pools/{pool}
	OpChange       = "change"       // capacityd.<region>.change.<pool>, body as PATCH; header If-Match
	OpAvailability = "availability" // capacityd.<region>.availability, body the query as JSON
)

// Subject returns the subject of an operation in a region, with its pool
// and reservation tokens.
func Subject(region, op string, tokens ...string) string {
	return strings.Join(append([]string{SubjectRoot, region, op}, tokens...), ".")
}

// QueueGroup is the queue group of a region's instances.
func QueueGroup(region string) string { return SubjectRoot + "-" + region }

// Pools is the write side (*pools.Service), as web.Pools.
type Pools = web.Pools

// Availability is the availability read model, as web.Availability.
type Availability = web.Availability

// Config is what the service needs. Pools is required.
type Config struct {
	// Region names the subjects this instance answers.
	Region string
	// Pools is the write side requests of the public operations go to: a
	// Router, which forwards what another region writes.
	Pools Pools
	// Local is this region's own write side, which forwarded operations
	// (OpForward) go to, never forwarded again. Default Pools.
	Local Pools
	// Writer names the region that writes a pool now; a forwarded
	// operation for a pool this region does not write is refused with 503
	// region-unavailable instead of written. nil: this region writes all.
	Writer func(pool string) string
	// Fence, when set, answers OpFence: a region promoting this one's
	// pools asks it to stop writing them (a handover).
	Fence func(ctx context.Context, body []byte) (any, error)
	// Availability is the read model; nil answers 503.
	Availability Availability
	// Figures is the read models' figures per pool (OpFigures); nil
	// answers 503.
	Figures Figures
	// Logger receives internal errors.
	Logger zerolog.Logger
	// Now is the clock reservations are shown at. Default time.Now.
	Now func() time.Time
	// MaxInFlight bounds the requests being answered at once. Default 4096.
	MaxInFlight int
	// Timeout bounds one request. Default 15s.
	Timeout time.Duration
}

// Service is the running micro service. Stop it with Close.
type Service struct {
	cfg Config
	nc  *nats.Conn
	svc micro.Service

	slots  chan struct{}
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	stats  map[string]*endpointStats
}

// endpointStats are an endpoint's own counts: requests answered, errors,
// and the time from receipt to answer.
type endpointStats struct {
	requests, errors, nanos atomic.Int64
	lastError               atomic.Pointer[string]
}

// statsData is an endpoint's stats "data" in `nats micro stats`.
type statsData struct {
	Answered      int64   `json:"answered"`
	Errors        int64   `json:"errors"`
	AverageMillis float64 `json:"average_ms"`
	LastError     string  `json:"last_error,omitempty"`
}

// handler answers one request: the subject's tokens after the operation,
// the request; it returns the reply body or an error to map to a problem.
type handler func(ctx context.Context, tokens []string, req micro.Request) (any, error)

// New starts the service on nc.
func New(nc *nats.Conn, cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	s := &Service{cfg: cfg, nc: nc, slots: make(chan struct{}, cfg.MaxInFlight), stats: map[string]*endpointStats{}}
	endpoints := []struct {
		op, subject string
		h           handler
	}{
		{OpHold, OpHold + ".*", s.hold},
		{OpConfirm, OpConfirm + ".*.*", s.reservationCommand(func(id string) capacity.Command { return capacity.Confirm{ReservationID: id} })},
		{OpRelease, OpRelease + ".*.*", s.reservationCommand(func(id string) capacity.Command { return capacity.Release{ReservationID: id} })},
		{OpPool, OpPool + ".*", s.pool},
		{OpReservation, OpReservation + ".*.*", s.reservation},
		{OpDefine, OpDefine + ".*", s.define},
		{OpChange, OpChange + ".*", s.change},
		{OpAvailability, OpAvailability, s.availability},
		{OpForward, OpForward + ".*", s.forward},
		{OpFence, OpFence, s.fence},
		{OpFigures, OpFigures, s.figures},
	}
	for _, e := range endpoints {
		s.stats[e.op] = &endpointStats{} // before the service answers STATS
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "capacityd: hold, confirm and release capacity, define and change pools, read availability (region " + cfg.Region + ")",
		Metadata:    map[string]string{"region": cfg.Region},
		// One queue group per region: the instances of a region share its
		// requests, and a region's subjects are answered by it alone.
		QueueGroup: QueueGroup(cfg.Region),
		StatsHandler: func(e *micro.Endpoint) any {
			st := s.stats[e.Name]
			if st == nil {
				return nil
			}
			d := statsData{Answered: st.requests.Load(), Errors: st.errors.Load()}
			if d.Answered > 0 {
				d.AverageMillis = float64(st.nanos.Load()) / float64(d.Answered) / 1e6
			}
			if p := st.lastError.Load(); p != nil {
				d.LastError = *p
			}
			return d
		},
	})
	if err != nil {
		return nil, err
	}
	s.svc = svc
	group := svc.AddGroup(SubjectRoot + "." + cfg.Region)
	for _, e := range endpoints {
		if err := group.AddEndpoint(e.op, s.dispatch(e.op, e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	// Once New returns the server knows every subscription: a request sent
	// on another connection right away finds a responder.
	if err := nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return s, nil
}

// Info returns the micro service's description (what `nats micro info`
// shows).
func (s *Service) Info() micro.Info { return s.svc.Info() }

// Close stops taking requests and waits for those in flight to be
// answered. Close it before the pools service it uses.
func (s *Service) Close() error {
	err := s.svc.Stop()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// dispatch hands each request to a goroutine of its own, bounded by
// MaxInFlight.
func (s *Service) dispatch(op string, h handler) micro.Handler {
	st := s.stats[op]
	prefix := SubjectRoot + "." + s.cfg.Region + "." + op
	return micro.HandlerFunc(func(req micro.Request) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			// Nothing was done: for a write forwarded from another region this
			// region is unavailable, as if it had not answered at all.
			s.answer(req, st, time.Now(), nil, &capacity.Error{Code: capacity.EREGION, Region: s.cfg.Region,
				Message: fmt.Sprintf("region %s's service is shutting down: nothing was done, retry", s.cfg.Region)})
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		received := time.Now()
		s.slots <- struct{}{}
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			tokens := strings.Split(strings.TrimPrefix(strings.TrimPrefix(req.Subject(), prefix), "."), ".")
			if len(tokens) == 1 && tokens[0] == "" {
				tokens = nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
			defer cancel()
			ctx, span := startSpan(ctx, op, req)
			body, err := h(ctx, tokens, req)
			endSpan(span, err)
			s.answer(req, st, received, body, err)
		}()
	})
}

// answer replies with body, or err as a micro error carrying the problem.
func (s *Service) answer(req micro.Request, st *endpointStats, received time.Time, body any, err error) {
	msg := &nats.Msg{Subject: req.Reply()}
	if err == nil {
		if msg.Data, err = json.Marshal(body); err != nil {
			err = capacity.Errorf(capacity.EINTERNAL, "encoding the answer: %v", err)
		}
	}
	if err != nil {
		p := web.ProblemOf(err, req.Subject())
		if p.Internal {
			s.cfg.Logger.Error().Err(err).Str("subject", req.Subject()).Msg("natsapi: internal error")
		}
		msg.Header = nats.Header{micro.ErrorHeader: {p.Code}, micro.ErrorCodeHeader: {strconv.Itoa(p.Status)}}
		msg.Data = p.Body
		st.errors.Add(1)
		desc := strconv.Itoa(p.Status) + " " + p.Code
		st.lastError.Store(&desc)
	}
	st.requests.Add(1)
	st.nanos.Add(int64(time.Since(received)))
	if msg.Subject == "" {
		return // published without a reply subject: nobody to answer
	}
	if err := s.nc.PublishMsg(msg); err != nil {
		s.cfg.Logger.Warn().Err(err).Str("subject", req.Subject()).Msg("natsapi: reply not sent")
	}
}

// ids checks the subject's id tokens: pool, then reservation.
func ids(tokens []string, names ...string) error {
	for i, name := range names {
		if err := web.CheckID(name, tokens[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) hold(ctx context.Context, tokens []string, req micro.Request) (any, error) {
	if err := ids(tokens, "pool"); err != nil {
		return nil, err
	}
	cmd, err := web.DecodeHold(ctx, req.Data())
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Pools.Execute(ctx, tokens[0], cmd)
	if err != nil {
		return nil, err
	}
	return web.ResultBody(tokens[0], res, s.cfg.Now())
}

func (s *Service) reservationCommand(command func(id string) capacity.Command) handler {
	return func(ctx context.Context, tokens []string, req micro.Request) (any, error) {
		if err := ids(tokens, "pool", "id"); err != nil {
			return nil, err
		}
		if err := web.DecodeEmpty(ctx, req.Data()); err != nil {
			return nil, err
		}
		res, err := s.cfg.Pools.Execute(ctx, tokens[0], command(tokens[1]))
		if err != nil {
			return nil, err
		}
		return web.ResultBody(tokens[0], res, s.cfg.Now())
	}
}

func (s *Service) pool(ctx context.Context, tokens []string, _ micro.Request) (any, error) {
	if err := ids(tokens, "pool"); err != nil {
		return nil, err
	}
	v, err := s.cfg.Pools.Pool(ctx, tokens[0])
	if err != nil {
		return nil, err
	}
	return web.PoolBody(v), nil
}

func (s *Service) reservation(ctx context.Context, tokens []string, _ micro.Request) (any, error) {
	if err := ids(tokens, "pool", "id"); err != nil {
		return nil, err
	}
	r, err := s.cfg.Pools.Reservation(ctx, tokens[0], tokens[1])
	if err != nil {
		return nil, err
	}
	return web.ReservationBody(tokens[0], r, s.cfg.Now()), nil
}

func (s *Service) define(ctx context.Context, tokens []string, req micro.Request) (any, error) {
	if err := ids(tokens, "pool"); err != nil {
		return nil, err
	}
	cmd, err := web.DecodeDefine(ctx, tokens[0], req.Data())
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Pools.Execute(ctx, tokens[0], cmd)
	if err != nil {
		return nil, err
	}
	return web.PoolBody(res.Pool), nil
}

func (s *Service) change(ctx context.Context, tokens []string, req micro.Request) (any, error) {
	if err := ids(tokens, "pool"); err != nil {
		return nil, err
	}
	cmd, err := web.DecodeChange(ctx, req.Data(), req.Headers().Values("If-Match"))
	if err != nil {
		return nil, err
	}
	res, err := s.cfg.Pools.Execute(ctx, tokens[0], cmd)
	if err != nil {
		return nil, err
	}
	return web.PoolBody(res.Pool), nil
}

func (s *Service) availability(ctx context.Context, _ []string, req micro.Request) (any, error) {
	q, minPos, err := web.DecodeAvailability(ctx, req.Data())
	if err != nil {
		return nil, err
	}
	if s.cfg.Availability == nil {
		return nil, capacity.Errorf(capacity.EUNAVAILABLE, "the availability read model is not running")
	}
	ctx, cancel := context.WithTimeout(ctx, web.MaxMinPositionWait)
	defer cancel()
	var page views.AvailabilityPage
	if page, err = s.cfg.Availability.Availability(ctx, q, minPos); err != nil {
		return nil, err
	}
	return web.AvailabilityBody(page), nil
}
