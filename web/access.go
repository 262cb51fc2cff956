package web

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Role is what a bearer token may do. Roles are ordered: each may do
// everything the ones before it may.
type Role int

// The roles of docs/API.md, "Access".
const (
	RoleNone     Role = iota // no valid token
	RoleCustomer             // holds, confirm, release, reads of pools, reservations, availability
	RolePlanner              // and define, change; the planner UI
	RoleAdmin                // and /metrics, /v1/admin/*
)

// String returns the role's name as token files spell it.
func (r Role) String() string {
	switch r {
	case RoleCustomer:
		return "customer"
	case RolePlanner:
		return "planner"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, bool) {
	switch s {
	case "customer":
		return RoleCustomer, true
	case "planner":
		return RolePlanner, true
	case "admin":
		return RoleAdmin, true
	}
	return RoleNone, false
}

// Problem codes of access control.
const (
	codeUnauthorized = "unauthorized"
	codeForbidden    = "forbidden"
	codeRateLimited  = "rate-limited"
)

// TokenCookie is the cookie in which the planner UI keeps its token after
// the login page (HttpOnly, SameSite=Strict, Secure over TLS).
const TokenCookie = "capacityd_token"

// Tokens is a set of bearer tokens with their roles, read from a file of
// lines "<role> <token>" (blank lines and lines starting with # are
// skipped). Reload reads the file again; lookups never see half a file.
// It is safe for concurrent use.
type Tokens struct {
	path  string
	roles atomic.Pointer[map[[32]byte]Role]
}

// MinTokenLength is the shortest token a file may hold.
const MinTokenLength = 16

// LoadTokens reads a token file. An unreadable file, a bad line, an
// unknown role, a short token or one listed twice is an error naming the
// line.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the file again and swaps the new set in whole. On error
// the old set stays in force.
func (t *Tokens) Reload() error {
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	defer f.Close()
	roles, err := parseTokens(f)
	if err != nil {
		return fmt.Errorf("tokens %s: %w", t.path, err)
	}
	t.roles.Store(&roles)
	return nil
}

// Len returns how many tokens are in force.
func (t *Tokens) Len() int { return len(*t.roles.Load()) }

// parseTokens reads lines "<role> <token>".
func parseTokens(r io.Reader) (map[[32]byte]Role, error) {
	roles := make(map[[32]byte]Role)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"<role> <token>\"", n)
		}
		role, ok := ParseRole(fields[0])
		if !ok {
			return nil, fmt.Errorf("line %d: role %q: want customer, planner or admin", n, fields[0])
		}
		if len(fields[1]) < MinTokenLength {
			return nil, fmt.Errorf("line %d: token shorter than %d characters", n, MinTokenLength)
		}
		if strings.ContainsFunc(fields[1], func(c rune) bool { return !tokenChar(c) }) {
			return nil, fmt.Errorf("line %d: token has characters outside [A-Za-z0-9._~+/=-]", n)
		}
		key := sha256.Sum256([]byte(fields[1]))
		if _, dup := roles[key]; dup {
			return nil, fmt.Errorf("line %d: token listed twice", n)
		}
		roles[key] = role
	}
	return roles, sc.Err()
}

// tokenChar reports whether c may appear in a token: the characters of
// RFC 6750's b64token, all of which a cookie may carry as they are.
func tokenChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._~+/=-", c)
}

// Role returns the role of a token, RoleNone if it is not in force. The
// set is keyed by the token's SHA-256, so how long a lookup takes says
// nothing about how much of a real token a guess got right.
func (t *Tokens) Role(token string) Role {
	if t == nil || token == "" {
		return RoleNone
	}
	return (*t.roles.Load())[sha256.Sum256([]byte(token))]
}

// Access decides who may call what: the tokens in force (nil: everything
// is open) and the customers' write rate limit.
type Access struct {
	tokens *Tokens
	limit  rate.Limit
	burst  int

	mu       sync.Mutex
	limiters map[[32]byte]*rate.Limiter
}

// NewAccess returns access control over tokens (nil: open) with at most
// writesPerSecond write requests per second per customer token (0: no
// limit). The burst is one second's worth.
func NewAccess(tokens *Tokens, writesPerSecond float64) *Access {
	a := &Access{tokens: tokens, limiters: make(map[[32]byte]*rate.Limiter)}
	if writesPerSecond > 0 {
		a.limit = rate.Limit(writesPerSecond)
		a.burst = max(1, int(math.Ceil(writesPerSecond)))
	}
	return a
}

// Open reports whether no tokens are configured: every route is open.
func (a *Access) Open() bool { return a == nil || a.tokens == nil }

// RoleOf returns the role of a token; every token is admin when access
// is open.
func (a *Access) RoleOf(token string) Role {
	if a.Open() {
		return RoleAdmin
	}
	return a.tokens.Role(token)
}

// principal is who made a request, as the access middleware found it.
type principal struct {
	role  Role
	token string
}

type principalKey struct{}

// tokenOf returns the request's bearer token: the Authorization header,
// or for reads and the UI's own forms (which check their origin) the UI's
// cookie. A cookie never authorises an API write: SameSite=Strict keeps it
// off cross-site requests, and this keeps it off every other one too.
func tokenOf(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
		return ""
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead || strings.HasPrefix(r.URL.Path, "/ui/") {
		if c, err := r.Cookie(TokenCookie); err == nil {
			return c.Value
		}
	}
	return ""
}

// Authorize returns the role of the request's caller and a refusal (401
// or 403 problem) when it is below need. Handlers outside web (the
// planner UI) use it to decide between their own page and a refusal.
func (a *Access) Authorize(r *http.Request, need Role) (Role, error) {
	if a.Open() {
		return RoleAdmin, nil
	}
	token := tokenOf(r)
	role := a.tokens.Role(token)
	switch {
	case role == RoleNone && token == "":
		return role, &requestError{code: codeUnauthorized, detail: "this route needs a bearer token: Authorization: Bearer <token>"}
	case role == RoleNone:
		return role, &requestError{code: codeUnauthorized, detail: "the bearer token is not valid"}
	case role < need:
		return role, &requestError{code: codeForbidden, detail: fmt.Sprintf("this route needs the %s role; the token is %s", need, role)}
	}
	return role, nil
}

// require lets a request through when its caller has at least role need,
// and for customers' writes, within the rate limit.
func (a *Access) require(need Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if a.Open() {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			role, err := a.Authorize(r, need)
			if err != nil {
				if role == RoleNone {
					w.Header().Set("WWW-Authenticate", `Bearer realm="capacityd"`)
				}
				Error(w, r, err)
				return
			}
			token := tokenOf(r)
			if role == RoleCustomer && isWrite(r.Method) {
				if wait, ok := a.allow(token); !ok {
					w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
					Error(w, r, &requestError{code: codeRateLimited, detail: fmt.Sprintf("at most %g writes per second per token", float64(a.limit))})
					return
				}
			}
			ctx := context.WithValue(r.Context(), principalKey{}, principal{role: role, token: token})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// allow takes one write from the token's bucket, or says how long until
// one is there.
func (a *Access) allow(token string) (time.Duration, bool) {
	if a.limit == 0 {
		return 0, true
	}
	key := sha256.Sum256([]byte(token))
	a.mu.Lock()
	lim := a.limiters[key]
	if lim == nil {
		lim = rate.NewLimiter(a.limit, a.burst)
		a.limiters[key] = lim
	}
	a.mu.Unlock()
	if lim.Allow() {
		return 0, true
	}
	res := lim.Reserve()
	wait := res.Delay()
	res.Cancel()
	return max(wait, time.Second), false
}
