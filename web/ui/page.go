package ui

import (
	"net/http"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/web"
	"github.com/rs/zerolog"
)

// BasePage holds what every page shows: its title, the current section of
// the navigation, a message about the last action and the render time.
// Each page struct embeds it.
type BasePage struct {
	// Title is the page's <title> and main heading.
	Title string
	// Nav is the section highlighted in the navigation: "board", "pools"
	// or "week".
	Nav string
	// Flash, when set, is shown above the content.
	Flash *Flash
	// Now is when the page was rendered.
	Now time.Time
}

// Flash is a message about the outcome of an action.
type Flash struct {
	// Kind is "ok", "warn" or "error"; errors are announced at once to
	// screen readers (role=alert), the rest politely (role=status).
	Kind    string
	Message string
}

// base returns a BasePage for a page rendered now.
func (e *engine) base(title, nav string) BasePage {
	return BasePage{Title: title, Nav: nav, Now: e.now().UTC()}
}

// ErrorPage is the page of a request that failed.
type ErrorPage struct {
	BasePage
	Status  int
	Message string
	// Back is a link to where the planner can go on from here.
	Back string
}

// messageOf returns what a planner is told about err: the domain's
// client-safe message, or a generic one for internal errors, which are
// logged with the request.
func (e *engine) messageOf(r *http.Request, err error) (int, string) {
	status := web.StatusOf(capacity.ErrorCode(err))
	if status == http.StatusInternalServerError {
		e.logger(r).Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("ui: internal error")
		return status, "Something went wrong on our side; it has been logged. Try again."
	}
	return status, capacity.ErrorMessage(err)
}

// fail renders err as an error page.
func (e *engine) fail(w http.ResponseWriter, r *http.Request, err error, back string) {
	status, msg := e.messageOf(r, err)
	e.renderError(w, r, status, msg, back)
}

// renderError renders the error page with a status and message.
func (e *engine) renderError(w http.ResponseWriter, r *http.Request, status int, msg, back string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	p := ErrorPage{BasePage: e.base(http.StatusText(status), ""), Status: status, Message: msg, Back: back}
	e.render(w, r, status, viewError, p)
}

// logger returns the request's logger (set by the web middleware) or the
// UI's own.
func (e *engine) logger(r *http.Request) *zerolog.Logger {
	if l := web.RequestLogger(r.Context()); l.GetLevel() != zerolog.Disabled {
		return l
	}
	return &e.log
}

func handleNotFound(e *engine) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e.renderError(w, r, http.StatusNotFound, "There is no page at "+r.URL.Path+".", "/")
	}
}

func handleMethodNotAllowed(e *engine) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e.renderError(w, r, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+".", "/")
	}
}
