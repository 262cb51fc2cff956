package web

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Tokens of the access tests, one per role.
const (
	customerToken = "customer-token-0123456789"
	plannerToken  = "planner-token-0123456789"
	adminToken    = "admin-token-0123456789abc"
)

// writeTokens writes a token file and returns its path.
func writeTokens(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "tokens")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// accessStack is a stack whose routes need tokens.
func accessStack(t *testing.T, writesPerSecond float64) (*stack, *Tokens) {
	t.Helper()
	path := writeTokens(t, t.TempDir(), "# roles\ncustomer "+customerToken+"\nplanner "+plannerToken+"\n\nadmin "+adminToken+"\n")
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(c *Config) { c.Access = NewAccess(tokens, writesPerSecond) })
	return s, tokens
}

func bearer(token string) map[string]string {
	if token == "" {
		return nil
	}
	return map[string]string{"Authorization": "Bearer " + token}
}

// TestAccessMatrix sends every route with no token, a bad token and each
// role's token: below the route's role it is 401 or 403 and changes
// nothing; at or above it, it gets through.
func TestAccessMatrix(t *testing.T) {
	s, _ := accessStack(t, 0)
	h := s.handler
	res := do(t, h, req{method: "PUT", path: "/v1/pools/acl", body: `{"region":"north","kind":"delivery","starts_at":"2026-05-01T18:00:00Z","ends_at":"2026-05-01T19:00:00Z","capacity":1000}`, header: bearer(adminToken)})
	wantStatus(t, res, http.StatusCreated)
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/acl/holds", body: `{"reservation_id":"r0","quantity":1}`, header: bearer(adminToken)}), http.StatusCreated)
	version := func() uint64 {
		res := do(t, h, req{method: "GET", path: "/v1/pools/acl", header: bearer(adminToken)})
		wantStatus(t, res, http.StatusOK)
		return uint64(res.JSON(t)["version"].(float64))
	}

	const def = `{"region":"north","kind":"delivery","starts_at":"2026-05-01T18:00:00Z","ends_at":"2026-05-01T19:00:00Z","capacity":1000}`
	routes := []struct {
		method, path, body string
		need               Role // RoleNone: open
	}{
		{"GET", "/healthz", "", RoleNone},
		{"GET", "/readyz", "", RoleNone},
		{"GET", "/openapi.json", "", RoleNone},
		{"GET", "/metrics", "", RoleAdmin},
		{"PUT", "/v1/pools/acl", def, RolePlanner},
		{"GET", "/v1/pools/acl", "", RoleCustomer},
		{"HEAD", "/v1/pools/acl", "", RoleCustomer},
		{"PATCH", "/v1/pools/acl", `{"capacity":1000}`, RolePlanner},
		{"POST", "/v1/pools/acl/holds", `{"reservation_id":"r1","quantity":1}`, RoleCustomer},
		{"POST", "/v1/pools/acl/reservations/r0/confirm", "", RoleCustomer},
		{"POST", "/v1/pools/acl/reservations/r0/release", "", RoleCustomer},
		{"GET", "/v1/pools/acl/reservations/r0", "", RoleCustomer},
		{"GET", "/v1/pools/acl/events", "", RolePlanner},
		{"GET", "/v1/availability", "", RoleCustomer},
		{"GET", "/v1/reservations/r0", "", RoleCustomer},
		{"GET", "/v1/board/stream", "", RolePlanner},
	}
	callers := []struct {
		name  string
		token string
		role  Role
	}{
		{"no token", "", RoleNone}, {"bad token", "not-a-token-0123456789", RoleNone},
		{"customer", customerToken, RoleCustomer}, {"planner", plannerToken, RolePlanner}, {"admin", adminToken, RoleAdmin},
	}
	for _, rt := range routes {
		for _, c := range callers {
			t.Run(rt.method+" "+rt.path+" as "+c.name, func(t *testing.T) {
				before := version()
				res := do(t, h, req{method: rt.method, path: rt.path, body: rt.body, header: bearer(c.token)})
				switch {
				case rt.need == RoleNone || c.role >= rt.need:
					if res.Status == http.StatusUnauthorized || res.Status == http.StatusForbidden {
						t.Fatalf("status %d, want the route to let %s through (body %s)", res.Status, c.name, res.Body)
					}
					return
				case c.role == RoleNone:
					if rt.method == "HEAD" {
						wantStatus(t, res, http.StatusUnauthorized)
					} else {
						wantProblem(t, res, http.StatusUnauthorized, "unauthorized")
					}
					if res.Header.Get("WWW-Authenticate") == "" {
						t.Errorf("401 without WWW-Authenticate")
					}
				default:
					if rt.method == "HEAD" {
						wantStatus(t, res, http.StatusForbidden)
					} else {
						wantProblem(t, res, http.StatusForbidden, "forbidden")
					}
				}
				if got := version(); got != before {
					t.Errorf("a refused request moved the pool from version %d to %d", before, got)
				}
			})
		}
	}
	// A cookie carries a token for reads, never for API writes.
	cookie := map[string]string{"Cookie": TokenCookie + "=" + plannerToken}
	wantStatus(t, do(t, h, req{method: "GET", path: "/v1/pools/acl/events", header: cookie}), http.StatusOK)
	wantProblem(t, do(t, h, req{method: "PATCH", path: "/v1/pools/acl", body: `{"capacity":3}`, header: cookie}), http.StatusUnauthorized, "unauthorized")
}

// A customer token gets at most the configured writes per second; other
// tokens have buckets of their own, planners none, and reads are not
// counted.
func TestRateLimit(t *testing.T) {
	s, tokens := accessStack(t, 0.5) // one write per 2 s, a burst of 1
	h := s.handler
	wantStatus(t, do(t, h, req{method: "PUT", path: "/v1/pools/rl", body: `{"region":"north","kind":"delivery","starts_at":"2026-05-01T18:00:00Z","ends_at":"2026-05-01T19:00:00Z","capacity":100}`, header: bearer(plannerToken)}), http.StatusCreated)
	hold := func(id, token string) response {
		return do(t, h, req{method: "POST", path: "/v1/pools/rl/holds", body: `{"reservation_id":"` + id + `","quantity":1}`, header: bearer(token)})
	}
	wantStatus(t, hold("c1", customerToken), http.StatusCreated)
	before := poolVersionAs(t, s, "rl", customerToken)
	res := hold("c2", customerToken)
	wantProblem(t, res, http.StatusTooManyRequests, "rate-limited")
	if n, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || n < 1 || n > 2 {
		t.Errorf("Retry-After = %q, want 1 or 2 seconds", res.Header.Get("Retry-After"))
	}
	if got := poolVersionAs(t, s, "rl", customerToken); got != before {
		t.Errorf("a rate-limited hold moved the pool from version %d to %d", before, got)
	}
	for i := range 3 {
		wantStatus(t, hold("p"+strconv.Itoa(i), plannerToken), http.StatusCreated)
	}
	if tokens.Len() != 3 {
		t.Fatalf("tokens = %d, want 3", tokens.Len())
	}
}

func poolVersionAs(t *testing.T, s *stack, id, token string) uint64 {
	t.Helper()
	res := do(t, s.handler, req{method: "GET", path: "/v1/pools/" + id, header: bearer(token)})
	wantStatus(t, res, http.StatusOK)
	return uint64(res.JSON(t)["version"].(float64))
}

// Reload swaps the token set whole; a file that does not parse leaves the
// old set in force.
func TestTokensReload(t *testing.T) {
	dir := t.TempDir()
	path := writeTokens(t, dir, "customer "+customerToken+"\n")
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := tokens.Role(customerToken); got != RoleCustomer {
		t.Fatalf("role = %v", got)
	}
	writeTokens(t, dir, "planner "+plannerToken+"\n")
	if err := tokens.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, want := tokens.Role(customerToken), RoleNone; got != want {
		t.Errorf("removed token: role %v, want %v", got, want)
	}
	if got, want := tokens.Role(plannerToken), RolePlanner; got != want {
		t.Errorf("added token: role %v, want %v", got, want)
	}
	for _, bad := range []string{"boss " + adminToken, "admin short", "admin " + adminToken + " extra", "admin tok;en0123456789abcdef", "admin " + adminToken + "\nplanner " + adminToken} {
		writeTokens(t, dir, bad+"\n")
		if err := tokens.Reload(); err == nil {
			t.Errorf("file %q loaded", bad)
		}
		if got := tokens.Role(plannerToken); got != RolePlanner {
			t.Errorf("after a bad reload the old set is gone: %v", got)
		}
	}
}
