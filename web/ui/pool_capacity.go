package ui

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/web"
	"github.com/go-chi/chi/v5"
)

// maxFormBytes bounds a form body.
const maxFormBytes = 64 << 10

// parseForm reads a url-encoded form body of bounded size.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return capacity.Errorf(capacity.EINVALID, "the form could not be read: send it as application/x-www-form-urlencoded, at most %d bytes", maxFormBytes)
	}
	return nil
}

// versionField reads the hidden version field: the pool version the form
// was rendered at, which the change is conditional on (If-Match).
func versionField(r *http.Request) (uint64, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(r.PostForm.Get("version")), 10, 64)
	if err != nil {
		return 0, capacity.Errorf(capacity.EINVALID, "the form has no valid pool version; reload the pool page and try again")
	}
	return v, nil
}

// poolParam reads the pool id of an action's path.
func poolParam(r *http.Request) (string, error) {
	id := chi.URLParam(r, "pool")
	if !capacity.ValidID(id) {
		return "", capacity.Errorf(capacity.EINVALID, "pool ids are 1-%d characters of A-Z, a-z, 0-9, _ and -", capacity.MaxIDLength)
	}
	return id, nil
}

// conflictMessage tells the planner who lost a race what the pool looks
// like now, and that submitting again applies their change to it.
func conflictMessage(p PoolPage, attempted string) string {
	v := p.Pool
	return fmt.Sprintf("Your change (%s) was not applied: someone else changed this pool after you opened the page. "+
		"It is now at version %d: capacity %d, %d held, %d confirmed, %d available, %s. "+
		"Check the figures below: the forms now carry the new version, so you can submit again if you still want the change.",
		attempted, v.Version, v.Capacity, v.Held, v.Confirmed, v.Available, v.Status)
}

// rejectPoolAction renders the pool page again with the outcome of a
// refused action: 400 for a bad value, 412 for a stale version (with the
// current figures), the error page for anything else. adjust fills the
// refused form back in.
func rejectPoolAction(w http.ResponseWriter, r *http.Request, e *engine, pools Pools, history History, id string, cause error, attempted string, adjust func(*PoolPage)) {
	code := capacity.ErrorCode(cause)
	if code != capacity.EINVALID && code != capacity.EPRECONDITION {
		e.fail(w, r, cause, poolURL(id, ""))
		return
	}
	p, err := poolPage(r.Context(), e, pools, history, id)
	if err != nil {
		e.fail(w, r, err, "/ui/pools")
		return
	}
	status := web.StatusOf(code)
	if code == capacity.EPRECONDITION {
		p.Flash = &Flash{Kind: "error", Message: conflictMessage(p, attempted)}
	} else {
		p.Flash = &Flash{Kind: "error", Message: "Not applied: " + capacity.ErrorMessage(cause)}
	}
	if adjust != nil {
		adjust(&p)
	}
	e.render(w, r, status, viewPool, p)
}

// handlePoolCapacity serves POST /ui/pools/{pool}/capacity: a new
// capacity, conditional on the version the form was rendered at.
func handlePoolCapacity(e *engine, pools Pools, history History) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := poolParam(r)
		if err != nil {
			e.fail(w, r, err, "/ui/pools")
			return
		}
		if err := parseForm(w, r); err != nil {
			e.fail(w, r, err, poolURL(id, ""))
			return
		}
		raw := strings.TrimSpace(r.PostForm.Get("capacity"))
		keepInput := func(problem string) func(*PoolPage) {
			return func(p *PoolPage) { p.Capacity.Value, p.Capacity.Error = raw, problem }
		}
		n, convErr := strconv.Atoi(raw)
		if convErr != nil || n < 0 || n > capacity.MaxCapacity {
			problem := fmt.Sprintf("Capacity must be a whole number from 0 to %d.", capacity.MaxCapacity)
			rejectPoolAction(w, r, e, pools, history, id, capacity.Errorf(capacity.EINVALID, "%s", problem), "", keepInput(problem))
			return
		}
		version, err := versionField(r)
		if err != nil {
			rejectPoolAction(w, r, e, pools, history, id, err, "", keepInput(""))
			return
		}
		res, err := pools.Execute(r.Context(), id, capacity.ChangePool{Capacity: &n, IfVersion: &version})
		if err != nil {
			rejectPoolAction(w, r, e, pools, history, id, err, fmt.Sprintf("capacity to %d", n), keepInput(""))
			return
		}
		done := "capacity"
		if !res.Written {
			done = "unchanged"
		}
		http.Redirect(w, r, poolURL(id, done), http.StatusSeeOther)
	}
}
