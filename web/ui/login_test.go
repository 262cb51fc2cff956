package ui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/web"
	"github.com/rs/zerolog"
)

// With tokens, the planner asks for a token once: a page without one goes
// to the login page and back; the token is kept in an HttpOnly,
// SameSite=Strict cookie (Secure over TLS); a customer's token is refused;
// the forms keep their origin check.
func TestLogin(t *testing.T) {
	s := newStack(t)
	const planner, customer = "planner-token-0123456789", "customer-token-0123456789"
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("planner "+planner+"\ncustomer "+customer+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := web.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	access := web.NewAccess(tokens, 0)
	u, err := New(Config{Pools: s.svc, History: s.events, Board: s.board, Availability: s.avail,
		Logger: zerolog.New(s.logs), Now: s.clock.Now, Heartbeat: 100 * time.Millisecond, Access: access})
	if err != nil {
		t.Fatal(err)
	}
	h := web.NewServer(web.Config{Pools: s.svc, History: s.events, UI: u, Now: s.clock.Now, Logger: zerolog.New(s.logs), Access: access})

	res := serve(t, h, httptest.NewRequest(http.MethodGet, "/ui/pools?region=north", nil))
	wantStatus(t, res, http.StatusSeeOther)
	if got, want := res.Header.Get("Location"), "/ui/login?next="+url.QueryEscape("/ui/pools?region=north"); got != want {
		t.Fatalf("Location = %q, want %q", got, want)
	}
	wantBody(t, serve(t, h, httptest.NewRequest(http.MethodGet, "/ui/login?next=/ui/pools", nil)), `name="token"`, `value="/ui/pools"`)
	wantStatus(t, serve(t, h, httptest.NewRequest(http.MethodGet, "/ui/static/ui.css", nil)), http.StatusOK)

	login := func(token, next string, tls bool) response {
		form := url.Values{"token": {token}, "next": {next}}
		req := httptest.NewRequest(http.MethodPost, "/ui/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://"+req.Host)
		if tls {
			req.Header.Set("X-Forwarded-Proto", "https")
		}
		return serve(t, h, req)
	}
	wantStatus(t, login("wrong-token-0123456789", "/", false), http.StatusUnauthorized)
	wantStatus(t, login(customer, "/", false), http.StatusForbidden)
	res = login(planner, "https://evil.example/", false)
	wantStatus(t, res, http.StatusSeeOther)
	if got := res.Header.Get("Location"); got != "/" {
		t.Errorf("login sent the planner to %q, want / (never off-site)", got)
	}
	cookie := res.Header.Get("Set-Cookie")
	for _, want := range []string{web.TokenCookie + "=" + planner, "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("Set-Cookie %q lacks %q", cookie, want)
		}
	}
	if strings.Contains(cookie, "Secure") {
		t.Errorf("Secure cookie over plain HTTP: %q", cookie)
	}
	if c := login(planner, "/", true).Header.Get("Set-Cookie"); !strings.Contains(c, "Secure") {
		t.Errorf("cookie over TLS is not Secure: %q", c)
	}

	withCookie := func(method, target, token string) *http.Request {
		req := httptest.NewRequest(method, target, nil)
		req.AddCookie(&http.Cookie{Name: web.TokenCookie, Value: token})
		return req
	}
	wantStatus(t, serve(t, h, withCookie(http.MethodGet, "/ui/pools", planner)), http.StatusOK)
	wantStatus(t, serve(t, h, withCookie(http.MethodGet, "/", planner)), http.StatusOK)
	wantStatus(t, serve(t, h, withCookie(http.MethodGet, "/ui/pools", customer)), http.StatusForbidden)
	// A form post with the cookie but from another site is still refused.
	req := withCookie(http.MethodPost, "/ui/week", planner)
	req.Header.Set("Origin", "https://evil.example")
	wantStatus(t, serve(t, h, req), http.StatusForbidden)
	// Without the cookie, a form post is refused before it is read.
	req = httptest.NewRequest(http.MethodPost, "/ui/week", strings.NewReader("regions=north"))
	req.Header.Set("Origin", "http://"+req.Host)
	wantStatus(t, serve(t, h, req), http.StatusUnauthorized)
	// The board's feed takes the cookie too.
	req = withCookie(http.MethodHead, "/v1/board/stream", planner)
	wantStatus(t, serve(t, h, req), http.StatusOK)
}
