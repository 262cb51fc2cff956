package pgpeer

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/cmd/capacityd/internal/loadgen"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// postgresURL is the server the TestPostgres tests run against. They are
// opt-in, like the e2e soaks: without a server they are not run (the
// default suite needs no PostgreSQL), and TestMain says so.
var postgresURL = flag.String("postgres", "", "PostgreSQL URL for the TestPostgres tests (or $CAPACITY_TEST_POSTGRES); without one they are not run")

func TestMain(m *testing.M) {
	flag.Parse()
	if *postgresURL == "" {
		*postgresURL = os.Getenv("CAPACITY_TEST_POSTGRES")
	}
	if *postgresURL == "" {
		skip := "^TestPostgres"
		if cur := flag.Lookup("test.skip").Value.String(); cur != "" {
			skip = cur + "|" + skip
		}
		if err := flag.Set("test.skip", skip); err != nil {
			fmt.Fprintln(os.Stderr, "pgpeer:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "pgpeer: TestPostgres* not run: they need a real server, given with CAPACITY_TEST_POSTGRES=postgres://... or -postgres")
	}
	os.Exit(m.Run())
}

// startPeer starts a peer on the test server and closes it at the end of
// the test, checking that its schema is gone.
func startPeer(t *testing.T, conns int) *Service {
	t.Helper()
	s, err := Start(context.Background(), Config{URL: *postgresURL, Conns: conns, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		conn, err := pgx.Connect(context.Background(), *postgresURL)
		if err != nil {
			t.Errorf("connecting to check the schema is gone: %v", err)
			return
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, s.Schema()).Scan(&n); err != nil {
			t.Errorf("looking for schema %s: %v", s.Schema(), err)
		} else if n != 0 {
			t.Errorf("schema %s still there after Close", s.Schema())
		}
	})
	return s
}

func poolBody(capacity int) []byte {
	starts := time.Now().UTC().Truncate(time.Hour).Add(24 * time.Hour)
	return fmt.Appendf(nil, `{"region":"eu","kind":"k","starts_at":%q,"ends_at":%q,"capacity":%d}`,
		starts.Format(time.RFC3339), starts.Add(time.Hour).Format(time.RFC3339), capacity)
}

func holdBody(id string, quantity int) []byte {
	return fmt.Appendf(nil, `{"reservation_id":%q,"quantity":%d,"ttl":"1h"}`, id, quantity)
}

// TestPostgresAPI walks the peer's routes: each answer's status and
// problem, and the pool's counters after them.
func TestPostgresAPI(t *testing.T) {
	s := startPeer(t, 4)
	if d := s.Durability(); d.Fsync == "" || d.SynchronousCommit == "" || d.ServerVersion == "" {
		t.Errorf("durability = %+v, want the server's settings", d)
	}
	c := loadgen.NewClient(s.URL(), 4)
	defer c.Close()
	ctx := context.Background()
	for _, step := range []struct {
		name, method, path string
		body               []byte
		status             int
		problem            string
	}{
		{"define", http.MethodPut, "/v1/pools/p1", poolBody(3), http.StatusCreated, ""},
		{"define again", http.MethodPut, "/v1/pools/p1", poolBody(3), http.StatusOK, ""},
		{"define otherwise", http.MethodPut, "/v1/pools/p1", poolBody(4), http.StatusConflict, "conflict"},
		{"define, bad id", http.MethodPut, "/v1/pools/p%20x", poolBody(4), http.StatusBadRequest, "invalid-request"},
		{"hold", http.MethodPost, "/v1/pools/p1/holds", holdBody("r1", 2), http.StatusCreated, ""},
		{"hold again", http.MethodPost, "/v1/pools/p1/holds", holdBody("r1", 2), http.StatusOK, ""},
		{"hold the same id otherwise", http.MethodPost, "/v1/pools/p1/holds", holdBody("r1", 1), http.StatusConflict, "conflict"},
		{"hold too much", http.MethodPost, "/v1/pools/p1/holds", holdBody("r2", 2), http.StatusConflict, "insufficient-capacity"},
		{"hold the rest", http.MethodPost, "/v1/pools/p1/holds", holdBody("r3", 1), http.StatusCreated, ""},
		{"hold in a pool that does not exist", http.MethodPost, "/v1/pools/nope/holds", holdBody("r1", 1), http.StatusNotFound, "not-found"},
		{"hold, no quantity", http.MethodPost, "/v1/pools/p1/holds", []byte(`{"reservation_id":"r4"}`), http.StatusBadRequest, "invalid-request"},
		{"hold, unknown field", http.MethodPost, "/v1/pools/p1/holds", []byte(`{"reservation_id":"r4","quantity":1,"colour":"red"}`), http.StatusBadRequest, "invalid-request"},
		{"read a pool that does not exist", http.MethodGet, "/v1/pools/nope", nil, http.StatusNotFound, "not-found"},
	} {
		out := c.Do(ctx, step.name, step.method, step.path, step.body, nil)
		if out.Err != nil || out.Status != step.status || out.Problem != step.problem {
			t.Errorf("%s: status %d problem %q err %v, want %d %q", step.name, out.Status, out.Problem, out.Err, step.status, step.problem)
		}
	}
	var p poolJSON
	if out := c.Do(ctx, "read", http.MethodGet, "/v1/pools/p1", nil, &p); out.Err != nil || out.Status != http.StatusOK {
		t.Fatalf("GET /v1/pools/p1: %+v", out)
	}
	if p.Capacity != 3 || p.Held != 3 || p.Confirmed != 0 || p.Available != 0 || p.OverCapacity || p.Version != 3 {
		t.Errorf("pool = %+v, want capacity 3, held 3, version 3 (defined, two holds)", p)
	}
	var r reservationJSON
	if out := c.Do(ctx, "hold again", http.MethodPost, "/v1/pools/p1/holds", holdBody("r1", 2), &r); out.Status != http.StatusOK {
		t.Fatalf("repeat: %+v", out)
	}
	if r.ReservationID != "r1" || r.Pool != "p1" || r.Quantity != 2 || r.Status != "held" || r.TTL != "1h0m0s" || r.Version != 2 ||
		!r.ExpiresAt.Equal(r.HeldAt.Add(time.Hour)) {
		t.Errorf("repeated hold answered %+v, want the first hold of r1", r)
	}
}

// TestPostgresRace races 64 clients for the 50 units of one pool, two at a
// time through 8 connections: exactly 50 holds win, none twice.
func TestPostgresRace(t *testing.T) {
	s := startPeer(t, 8)
	c := loadgen.NewClient(s.URL(), 64)
	defer c.Close()
	ctx := context.Background()
	if out := c.Do(ctx, "define", http.MethodPut, "/v1/pools/race", poolBody(50), nil); out.Status != http.StatusCreated {
		t.Fatalf("define: %+v", out)
	}
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := range 4 {
				id := "r" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				out := c.Do(ctx, "hold", http.MethodPost, "/v1/pools/race/holds", holdBody(id, 1), nil)
				mu.Lock()
				statuses[out.Status]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if statuses[http.StatusCreated] != 50 || statuses[http.StatusConflict] != 64*4-50 {
		t.Errorf("statuses = %v, want 50 created and %d conflicts", statuses, 64*4-50)
	}
	var p poolJSON
	if out := c.Do(ctx, "read", http.MethodGet, "/v1/pools/race", nil, &p); out.Status != http.StatusOK || p.Held != 50 || p.OverCapacity {
		t.Errorf("pool = %+v (%+v), want held 50", p, out)
	}
}

// TestPostgresLoad drives the bench's own many-pools load at the peer for
// a moment and checks every pool against the load generator's ledger, as
// `capacityd bench --postgres` does.
func TestPostgresLoad(t *testing.T) {
	const clients = 8
	s := startPeer(t, clients)
	c := loadgen.NewClient(s.URL(), clients)
	defer c.Close()
	ctx := context.Background()
	wl, err := loadgen.NewWorkload(loadgen.WorkloadConfig{Scenario: loadgen.ManyPools, Client: c, Clients: clients, Pools: 20, Region: "eu", Prefix: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := wl.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	res := loadgen.Run(ctx, loadgen.RunConfig{Name: "postgres", Clients: clients, Duration: 500 * time.Millisecond}, wl.Op)
	if res.OK == 0 || res.Failed != 0 {
		t.Errorf("run: %d ok, %d failed (%v)", res.OK, res.Failed, res.Errors)
	}
	if check := wl.Verify(ctx); !check.Passed || check.Held == 0 {
		t.Errorf("check: %+v", check)
	}
}
