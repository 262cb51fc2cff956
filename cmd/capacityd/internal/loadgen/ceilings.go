package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Ceiling names, as they appear in reports and ratios.
const (
	CeilingHTTP         = "http"          // chi handler that decodes the hold and answers, nothing else
	CeilingStorageSync  = "storage-sync"  // one JetStream publish per client at a time, waiting for each ack
	CeilingStorageAsync = "storage-async" // async JetStream publishes, asyncWindow in flight per client
)

// asyncWindow is how many publishes each client of the async storage
// ceiling keeps in flight. Unbounded PublishAsync stalls under SyncAlways
// (measured on the reference machine), so it is capped.
const asyncWindow = 16

// HTTPCeiling is a do-nothing hold endpoint on its own loopback listener:
// chi routing, a strict JSON decode of the same body and an encode of a
// reservation-shaped answer. No store, no pool: what HTTP and JSON alone
// cost on this machine.
type HTTPCeiling struct {
	srv  *http.Server
	url  string
	done chan error
}

// StartHTTPCeiling starts the ceiling server on 127.0.0.1 and a free port.
func StartHTTPCeiling() (*HTTPCeiling, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := chi.NewRouter()
	r.Post("/v1/pools/{pool}/holds", ceilingHold)
	c := &HTTPCeiling{
		srv:  &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second},
		url:  "http://" + ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { c.done <- c.srv.Serve(ln) }()
	return c, nil
}

// URL returns the ceiling server's base URL.
func (c *HTTPCeiling) URL() string { return c.url }

// Close stops the server and waits for it.
func (c *HTTPCeiling) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if serveErr := <-c.done; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}

// ceilingHoldRequest and ceilingReservation have the fields of the
// service's hold request and reservation answer.
type ceilingHoldRequest struct {
	ReservationID string  `json:"reservation_id"`
	Quantity      *int    `json:"quantity"`
	TTL           *string `json:"ttl"`
}

type ceilingReservation struct {
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

// ceilingHold decodes and checks a hold like the service does and answers
// 201 with a reservation.
func ceilingHold(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	var h ceilingHoldRequest
	if err := dec.Decode(&h); err != nil || h.Quantity == nil || h.ReservationID == "" {
		http.Error(w, `{"type":"https://capacityd.dev/problems/invalid-request"}`, http.StatusBadRequest)
		return
	}
	ttl := 10 * time.Minute
	if h.TTL != nil {
		d, err := time.ParseDuration(*h.TTL)
		if err != nil {
			http.Error(w, `{"type":"https://capacityd.dev/problems/invalid-request"}`, http.StatusBadRequest)
			return
		}
		ttl = d
	}
	now := time.Now().UTC()
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(ceilingReservation{ReservationID: h.ReservationID, Pool: chi.URLParam(r, "pool"),
		Quantity: *h.Quantity, Status: "held", ExpiresAt: now.Add(ttl), Version: 1, HeldAt: now, TTL: ttl.String(), PoolVersion: 1})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", r.URL.Path)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(buf.Bytes())
}

// ceilingEvent is about the size of a stored hold event.
var ceilingEvent = []byte(`{"type":"capacity.hold.placed","pool":"bench-hot","reservation_id":"c12-123456","quantity":1,` +
	`"ttl":3600000000000,"held_at":"2026-05-01T18:00:00.123456789Z","expires_at":"2026-05-01T19:00:00.123456789Z"}`)

// StorageCeiling publishes to a scratch file-storage stream on nc's
// JetStream, the way the service's event stream is configured (R1, file
// storage, 2 minute dedupe window, a Nats-Msg-Id on every message), from
// rc.Clients clients, then deletes the stream. mode is CeilingStorageSync
// or CeilingStorageAsync. The server's sync setting decides whether acks
// wait for fsync; sync, when not nil, is waited for after each ack, as the
// service waits for a groupsync round under --sync always.
func StorageCeiling(ctx context.Context, nc *nats.Conn, mode string, rc RunConfig, sync func(ctx context.Context, stream string) error) (Result, error) {
	clients := max(rc.Clients, 1)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(clients*asyncWindow))
	if err != nil {
		return Result{}, err
	}
	name := "BENCH_CEILING_" + nuid.Next()
	subject := "bench.ceiling." + name
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(setup, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject + ".>"}, Storage: jetstream.FileStorage,
		Replicas: 1, Duplicates: 2 * time.Minute, MaxMsgs: -1, MaxBytes: -1,
	}); err != nil {
		return Result{}, fmt.Errorf("scratch stream %s: %w", name, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		select { // let what is in flight land before the stream goes
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
		}
		_ = js.DeleteStream(ctx, name)
	}()

	subjects := make([]string, clients)
	next := make([]uint64, clients)
	for w := range subjects {
		subjects[w] = subject + ".c" + strconv.Itoa(w)
	}
	msgID := func(w int) string {
		next[w]++
		return name + "-" + strconv.Itoa(w) + "-" + strconv.FormatUint(next[w], 10)
	}
	var op Op
	switch mode {
	case CeilingStorageSync:
		op = func(ctx context.Context, w int) Outcome {
			if _, err := js.Publish(ctx, subjects[w], ceilingEvent, jetstream.WithMsgID(msgID(w))); err != nil {
				return Outcome{Op: "publish", Err: err}
			}
			if sync != nil {
				if err := sync(ctx, name); err != nil {
					return Outcome{Op: "publish", Err: err}
				}
			}
			return Outcome{Op: "publish", Status: http.StatusOK}
		}
	case CeilingStorageAsync:
		type sent struct {
			f  jetstream.PubAckFuture
			at time.Time
		}
		inflight := make([][]sent, clients)
		// Each op tops the client's window up, then takes the oldest ack:
		// one ack per op, latency from that message's publish to its ack
		// being seen (an upper bound).
		op = func(ctx context.Context, w int) Outcome {
			for len(inflight[w]) < asyncWindow {
				f, err := js.PublishAsync(subjects[w], ceilingEvent, jetstream.WithMsgID(msgID(w)))
				if err != nil {
					return Outcome{Op: "publish", Err: err}
				}
				inflight[w] = append(inflight[w], sent{f, time.Now()})
			}
			s := inflight[w][0]
			inflight[w] = inflight[w][1:]
			select {
			case <-s.f.Ok():
				if sync != nil {
					if err := sync(ctx, name); err != nil {
						return Outcome{Op: "publish", Err: err, Latency: time.Since(s.at)}
					}
				}
				return Outcome{Op: "publish", Status: http.StatusOK, Latency: time.Since(s.at)}
			case err := <-s.f.Err():
				return Outcome{Op: "publish", Err: err, Latency: time.Since(s.at)}
			case <-ctx.Done():
				return Outcome{Op: "publish", Err: ctx.Err()}
			}
		}
	default:
		return Result{}, fmt.Errorf("unknown storage ceiling %q", mode)
	}
	rc.Clients = clients
	return Run(ctx, rc, op), nil
}

// HTTPCeilingRun drives hot-pool-shaped holds at the ceiling server with
// client.
func HTTPCeilingRun(ctx context.Context, client *Client, rc RunConfig) (Result, error) {
	wl, err := NewWorkload(WorkloadConfig{Scenario: HotPool, Client: client, Clients: rc.Clients, Prefix: "ceiling"})
	if err != nil {
		return Result{}, err
	}
	return Run(ctx, rc, wl.Op), nil
}
