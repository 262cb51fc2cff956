package pgpeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
)

// Config says where the peer keeps its tables and how many connections it
// may use.
type Config struct {
	// URL is the PostgreSQL connection URL (or key=value string). The
	// peer's scratch schema goes into its database.
	URL string
	// Conns is the size of the connection pool: one per concurrent HTTP
	// client, so no request waits for a connection.
	Conns int
	// Log receives internal errors.
	Log zerolog.Logger
}

// Durability is what the server says about how a commit is made durable.
type Durability struct {
	Fsync             string `json:"fsync"`              // "on" or "off"
	SynchronousCommit string `json:"synchronous_commit"` // "on", "remote_apply", "local", "off", ...
	ServerVersion     string `json:"server_version"`
}

// Durable reports whether a commit is flushed to the local disk before it
// is acknowledged: what capacityd's --sync always promises.
func (d Durability) Durable() bool {
	return d.Fsync == "on" && d.SynchronousCommit != "off"
}

// Service is a running peer: its HTTP listener on loopback and its
// connection pool.
type Service struct {
	db         *pgxpool.Pool
	schema     string
	durability Durability
	srv        *http.Server
	url        string
	done       chan error
}

// schemaDDL creates the peer's tables in the schema search_path names.
const schemaDDL = `
CREATE TABLE pools (
	id        text PRIMARY KEY,
	region    text NOT NULL,
	kind      text NOT NULL,
	starts_at timestamptz NOT NULL,
	ends_at   timestamptz NOT NULL,
	capacity  bigint NOT NULL,
	overbook  bigint NOT NULL,
	held      bigint NOT NULL DEFAULT 0,
	confirmed bigint NOT NULL DEFAULT 0,
	version   bigint NOT NULL DEFAULT 1
);
CREATE TABLE reservations (
	pool_id    text NOT NULL REFERENCES pools (id),
	id         text NOT NULL,
	quantity   bigint NOT NULL,
	ttl_ns     bigint NOT NULL,
	status     text NOT NULL,
	held_at    timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	version    bigint NOT NULL,
	PRIMARY KEY (pool_id, id)
);`

// Start connects to PostgreSQL, creates a scratch schema with the peer's
// tables and starts serving on 127.0.0.1 and a free port. Close undoes
// all of it.
func Start(ctx context.Context, cfg Config) (_ *Service, err error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	conns := max(cfg.Conns, 1)
	pc.MaxConns, pc.MinConns = int32(conns), int32(conns)
	schema := "capacityd_bench_" + strings.ToLower(nuid.Next())
	pc.ConnConfig.RuntimeParams["search_path"] = schema
	pc.ConnConfig.RuntimeParams["application_name"] = "capacityd bench peer"
	db, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Service{db: db, schema: schema, done: make(chan error, 1)}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.QueryRow(setup, `SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('server_version')`).
		Scan(&s.durability.Fsync, &s.durability.SynchronousCommit, &s.durability.ServerVersion); err != nil {
		return nil, fmt.Errorf("postgres: reading its settings: %w", err)
	}
	if _, err := db.Exec(setup, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return nil, fmt.Errorf("postgres: creating schema %s: %w", schema, err)
	}
	defer func() {
		if err != nil {
			_ = s.dropSchema()
		}
	}()
	if _, err := db.Exec(setup, schemaDDL); err != nil {
		return nil, fmt.Errorf("postgres: creating tables in %s: %w", schema, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s.routes(cfg.Log), ReadHeaderTimeout: 10 * time.Second}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// URL returns the base URL the peer serves at.
func (s *Service) URL() string { return s.url }

// Schema returns the name of the peer's scratch schema.
func (s *Service) Schema() string { return s.schema }

// Durability returns what the server said about durability at Start.
func (s *Service) Durability() Durability { return s.durability }

// Close stops serving, waits for the server, drops the scratch schema and
// closes the connections.
func (s *Service) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if dropErr := s.dropSchema(); err == nil {
		err = dropErr
	}
	s.db.Close()
	return err
}

// dropSchema drops the scratch schema and its tables.
func (s *Service) dropSchema() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.db.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{s.schema}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("postgres: dropping schema %s: %w", s.schema, err)
	}
	return nil
}
