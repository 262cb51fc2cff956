package pgpeer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/web"
	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// maxBody bounds a request body, as capacityd's size limit does.
const maxBody = 1 << 20

// routes is the peer's API on one screen.
func (s *Service) routes(log zerolog.Logger) http.Handler {
	r := chi.NewRouter()
	r.Use(func(next http.Handler) http.Handler { // web.Error logs internal errors to the context's logger
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(log.WithContext(r.Context())))
		})
	})
	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	r.Put("/v1/pools/{pool}", s.handlePutPool)
	r.Get("/v1/pools/{pool}", s.handleGetPool)
	r.Post("/v1/pools/{pool}/holds", s.handleHold)
	return r
}

// poolJSON is capacityd's pool object, the fields the peer has.
type poolJSON struct {
	ID           string    `json:"id"`
	Region       string    `json:"region"`
	Kind         string    `json:"kind"`
	StartsAt     time.Time `json:"starts_at"`
	EndsAt       time.Time `json:"ends_at"`
	Capacity     int64     `json:"capacity"`
	Held         int64     `json:"held"`
	Confirmed    int64     `json:"confirmed"`
	Available    int64     `json:"available"`
	Status       string    `json:"status"`
	Version      int64     `json:"version"`
	Overbook     int64     `json:"overbook"`
	OverCapacity bool      `json:"over_capacity"`
}

func poolOf(p poolRow) poolJSON {
	return poolJSON{ID: p.ID, Region: p.Region, Kind: p.Kind, StartsAt: p.StartsAt.UTC(), EndsAt: p.EndsAt.UTC(),
		Capacity: p.Capacity, Held: p.Held, Confirmed: p.Confirmed, Available: max(0, p.Capacity-p.Held-p.Confirmed),
		Status: "open", Version: p.Version, Overbook: p.Overbook, OverCapacity: p.Held+p.Confirmed > p.Capacity+p.Overbook}
}

// reservationJSON is capacityd's reservation object as a hold answers it.
type reservationJSON struct {
	ReservationID string    `json:"reservation_id"`
	Pool          string    `json:"pool"`
	Quantity      int64     `json:"quantity"`
	Status        string    `json:"status"`
	ExpiresAt     time.Time `json:"expires_at"`
	Version       int64     `json:"version"`
	HeldAt        time.Time `json:"held_at"`
	TTL           string    `json:"ttl"`
	PoolVersion   int64     `json:"pool_version,omitempty"`
}

func (s *Service) handlePutPool(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "pool")
	if err := web.CheckID("pool", id); err != nil {
		web.Error(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		web.Error(w, r, capacity.Errorf(capacity.EINVALID, "reading the body: %v", err))
		return
	}
	d, err := web.DecodeDefine(r.Context(), id, body)
	if err != nil {
		web.Error(w, r, err)
		return
	}
	p, created, err := s.define(r.Context(), d)
	if err != nil {
		web.Error(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/pools/"+id)
	}
	encode(w, r, status, poolOf(p))
}

func (s *Service) handleGetPool(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "pool")
	if err := web.CheckID("pool", id); err != nil {
		web.Error(w, r, err)
		return
	}
	p, err := s.pool(r.Context(), s.db, id)
	if err != nil {
		web.Error(w, r, err)
		return
	}
	encode(w, r, http.StatusOK, poolOf(p))
}

func (s *Service) handleHold(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "pool")
	if err := web.CheckID("pool", id); err != nil {
		web.Error(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		web.Error(w, r, capacity.Errorf(capacity.EINVALID, "reading the body: %v", err))
		return
	}
	h, err := web.DecodeHold(r.Context(), body)
	if err != nil {
		web.Error(w, r, err)
		return
	}
	res, poolVersion, created, err := s.hold(r.Context(), id, h, time.Now().UTC())
	if err != nil {
		web.Error(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/pools/"+id+"/reservations/"+h.ReservationID)
	}
	encode(w, r, status, reservationJSON{ReservationID: res.ID, Pool: id, Quantity: res.Quantity, Status: res.Status,
		ExpiresAt: res.ExpiresAt.UTC(), Version: res.Version, HeldAt: res.HeldAt.UTC(), TTL: res.TTL.String(), PoolVersion: poolVersion})
}

// querier is what pool reads need: the pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const selectPool = `SELECT id, region, kind, starts_at, ends_at, capacity, overbook, held, confirmed, version FROM pools WHERE id = $1`

// pool reads one pool.
func (s *Service) pool(ctx context.Context, q querier, id string) (poolRow, error) {
	var p poolRow
	err := q.QueryRow(ctx, selectPool, id).Scan(&p.ID, &p.Region, &p.Kind, &p.StartsAt, &p.EndsAt, &p.Capacity, &p.Overbook, &p.Held, &p.Confirmed, &p.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, capacity.Errorf(capacity.ENOTFOUND, "pool %s not found", id)
	}
	return p, err
}

// define inserts a pool unless it exists; an existing one is a repeat if
// its definition is the same, else a conflict.
func (s *Service) define(ctx context.Context, d capacity.DefinePool) (p poolRow, created bool, err error) {
	tag, err := s.db.Exec(ctx, `INSERT INTO pools (id, region, kind, starts_at, ends_at, capacity, overbook)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		d.Pool, d.Region, d.Kind, d.StartsAt, d.EndsAt, d.Capacity, d.Overbook)
	if err != nil {
		return p, false, err
	}
	if p, err = s.pool(ctx, s.db, d.Pool); err != nil {
		return p, false, err
	}
	if tag.RowsAffected() == 0 && !sameDefinition(p, d) {
		return p, false, capacity.Errorf(capacity.ECONFLICT, "pool %s exists with a different definition", d.Pool)
	}
	return p, tag.RowsAffected() == 1, nil
}

// lockPool reads a pool and locks its row for the transaction, with the
// reservation of that pool with id reservation if there is one.
const lockPool = `SELECT p.ends_at, p.capacity, p.overbook, p.held, p.confirmed, p.version,
	r.quantity, r.ttl_ns, r.status, r.held_at, r.expires_at, r.version
	FROM pools p LEFT JOIN reservations r ON r.pool_id = p.id AND r.id = $2
	WHERE p.id = $1 FOR UPDATE OF p`

// hold runs one hold as one transaction (see the package comment) and
// returns the reservation, the pool's version after it and whether it was
// written now (false: a repeat of an earlier hold).
func (s *Service) hold(ctx context.Context, pool string, h capacity.Hold, now time.Time) (res reservationRow, poolVersion int64, created bool, err error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return res, 0, false, err
	}
	defer func() { _ = tx.Rollback(context.Background()) }() // a no-op after Commit
	var p poolRow
	var quantity, ttl, version *int64
	var status *string
	var heldAt, expiresAt *time.Time
	err = tx.QueryRow(ctx, lockPool, pool, h.ReservationID).Scan(&p.EndsAt, &p.Capacity, &p.Overbook, &p.Held, &p.Confirmed, &p.Version,
		&quantity, &ttl, &status, &heldAt, &expiresAt, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return res, 0, false, capacity.Errorf(capacity.ENOTFOUND, "pool %s not found", pool)
	}
	if err != nil {
		return res, 0, false, err
	}
	var existing *reservationRow
	if quantity != nil {
		existing = &reservationRow{ID: h.ReservationID, Quantity: *quantity, TTL: time.Duration(*ttl), Status: *status,
			HeldAt: *heldAt, ExpiresAt: *expiresAt, Version: *version}
	}
	write, err := decideHold(p, existing, h, now)
	if err != nil {
		return res, 0, false, err
	}
	if !write {
		return *existing, p.Version, false, nil // the rollback ends the transaction: nothing was written
	}
	res = reservationRow{ID: h.ReservationID, Quantity: int64(h.Quantity), TTL: h.TTL, Status: "held",
		HeldAt: now, ExpiresAt: now.Add(h.TTL), Version: p.Version + 1}
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO reservations (pool_id, id, quantity, ttl_ns, status, held_at, expires_at, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, pool, res.ID, res.Quantity, int64(res.TTL), res.Status, res.HeldAt, res.ExpiresAt, res.Version)
	batch.Queue(`UPDATE pools SET held = held + $2, version = version + 1 WHERE id = $1`, pool, res.Quantity)
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return res, 0, false, fmt.Errorf("writing hold %s on %s: %w", res.ID, pool, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, 0, false, fmt.Errorf("committing hold %s on %s: %w", res.ID, pool, err)
	}
	return res, res.Version, true, nil
}

// encode writes v as JSON with its length, as capacityd does.
func encode(w http.ResponseWriter, r *http.Request, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		web.Error(w, r, fmt.Errorf("encoding response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
