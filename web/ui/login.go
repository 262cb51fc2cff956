package ui

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/capacityd/capacityd/web"
)

// LoginPage asks for a planner's token.
type LoginPage struct {
	BasePage
	// Next is where to go once signed in (a path of this site).
	Next string
	// Error says why the last token was refused.
	Error string
}

// tokenCookieAge is how long the planner's token cookie lasts.
const tokenCookieAge = 12 * time.Hour

// requirePlanner lets a page through when its caller is at least a
// planner (by the token cookie, or a bearer token). Without a token a GET
// goes to the login page and comes back after it; a token of too low a
// role gets a 403 page. Open access lets everything through.
func requirePlanner(e *engine, access *web.Access) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if access.Open() {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			role, err := access.Authorize(r, web.RolePlanner)
			switch {
			case err == nil:
				next.ServeHTTP(w, r)
			case role == web.RoleNone && (r.Method == http.MethodGet || r.Method == http.MethodHead):
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			case role == web.RoleNone:
				e.renderError(w, r, http.StatusUnauthorized, "Sign in with a planner's token first; then send the form again.", "/ui/login")
			default:
				e.renderError(w, r, http.StatusForbidden, "This token is a "+role.String()+"'s; the planner needs a planner's or an admin's.", "/ui/login")
			}
		})
	}
}

// localPath returns next if it is a path of this site, else "/": the
// login page never sends anyone elsewhere.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func handleLoginForm(e *engine) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e.render(w, r, http.StatusOK, viewLogin, LoginPage{BasePage: e.base("Sign in", ""), Next: localPath(r.URL.Query().Get("next"))})
	}
}

// handleLogin checks the token and keeps it in an HttpOnly, SameSite=Strict
// cookie (Secure when the page came over TLS).
func handleLogin(e *engine, access *web.Access) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			e.renderError(w, r, http.StatusBadRequest, "The form could not be read.", "/ui/login")
			return
		}
		token, next := strings.TrimSpace(r.PostForm.Get("token")), localPath(r.PostForm.Get("next"))
		page := LoginPage{BasePage: e.base("Sign in", ""), Next: next}
		switch role := access.RoleOf(token); {
		case role == web.RoleNone:
			page.Error = "This token is not valid."
			e.render(w, r, http.StatusUnauthorized, viewLogin, page)
			return
		case role < web.RolePlanner:
			page.Error = "This token is a " + role.String() + "'s; the planner needs a planner's or an admin's."
			e.render(w, r, http.StatusForbidden, viewLogin, page)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: web.TokenCookie, Value: token, Path: "/", MaxAge: int(tokenCookieAge.Seconds()),
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r),
		})
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

// handleLogout forgets the token cookie.
func handleLogout() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: web.TokenCookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r)})
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	}
}

// overTLS reports whether the browser reached us over TLS, directly or
// through a proxy that says so.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
