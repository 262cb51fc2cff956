package ui

import (
	"net/http"

	"github.com/capacityd/capacityd/capacity"
)

// handlePoolStatus serves POST /ui/pools/{pool}/status: close or reopen a
// pool, conditional on the version the form was rendered at.
func handlePoolStatus(e *engine, pools Pools, history History) http.HandlerFunc {
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
		status := capacity.Status(r.PostForm.Get("status"))
		if status != capacity.Open && status != capacity.Closed {
			rejectPoolAction(w, r, e, pools, history, id, capacity.Errorf(capacity.EINVALID, "status must be %q or %q", capacity.Open, capacity.Closed), "", nil)
			return
		}
		version, err := versionField(r)
		if err != nil {
			rejectPoolAction(w, r, e, pools, history, id, err, "", nil)
			return
		}
		attempted, done := "closing the pool", "closed"
		if status == capacity.Open {
			attempted, done = "reopening the pool", "opened"
		}
		res, err := pools.Execute(r.Context(), id, capacity.ChangePool{Status: status, IfVersion: &version})
		if err != nil {
			rejectPoolAction(w, r, e, pools, history, id, err, attempted, nil)
			return
		}
		if !res.Written {
			done = "unchanged"
		}
		http.Redirect(w, r, poolURL(id, done), http.StatusSeeOther)
	}
}
