package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/go-chi/chi/v5"
)

// poolJSON is the pool object of docs/API.md, plus overbook and over_capacity.
type poolJSON struct {
	ID           string    `json:"id"`
	HomeRegion   string    `json:"home_region,omitempty"`
	Region       string    `json:"region"`
	Kind         string    `json:"kind"`
	StartsAt     time.Time `json:"starts_at"`
	EndsAt       time.Time `json:"ends_at"`
	Capacity     int       `json:"capacity"`
	Held         int       `json:"held"`
	Confirmed    int       `json:"confirmed"`
	Available    int       `json:"available"`
	Status       string    `json:"status"`
	Version      uint64    `json:"version"`
	Overbook     int       `json:"overbook"`
	OverCapacity bool      `json:"over_capacity"`
}

func poolOf(v capacity.PoolView) poolJSON {
	return poolJSON{
		ID: v.ID, HomeRegion: v.HomeRegion, Region: v.Region, Kind: v.Kind, StartsAt: v.StartsAt.UTC(), EndsAt: v.EndsAt.UTC(),
		Capacity: v.Capacity, Held: v.Held, Confirmed: v.Confirmed, Available: v.Available,
		Status: string(v.Status), Version: v.Version, Overbook: v.Overbook, OverCapacity: v.OverCapacity,
	}
}

// etag is the entity tag of a pool at a version.
func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// encodePool writes a pool with its ETag.
func encodePool(w http.ResponseWriter, r *http.Request, status int, v capacity.PoolView) {
	w.Header().Set("ETag", etag(v.Version))
	encode(w, r, status, poolOf(v))
}

// idProblem is the field problem of an id that capacity.ValidID refuses.
const idProblem = "must be 1-64 characters of [A-Za-z0-9_-]"

// idProblemOf says what is wrong with an id capacity.ValidID refuses: its
// length when it was given but is too long, else the rule.
func idProblemOf(id string) string {
	if len(id) > capacity.MaxIDLength {
		return fmt.Sprintf("is %d characters long; at most %d characters of [A-Za-z0-9_-]", len(id), capacity.MaxIDLength)
	}
	return idProblem
}

// idParam returns a path parameter that must be a valid id.
func idParam(r *http.Request, name string) (string, error) {
	id := chi.URLParam(r, name)
	if !capacity.ValidID(id) {
		problem := idProblemOf(id)
		return "", invalid(fmt.Sprintf("%s id %s", name, problem), map[string]string{name: problem})
	}
	return id, nil
}

// putPoolRequest defines a pool. Times are RFC 3339 strings, parsed in
// Valid so that a bad one is reported against its field.
type putPoolRequest struct {
	ID       *string `json:"id"`
	Region   string  `json:"region"`
	Kind     string  `json:"kind"`
	StartsAt string  `json:"starts_at"`
	EndsAt   string  `json:"ends_at"`
	Capacity *int    `json:"capacity"`
	Overbook *int    `json:"overbook"`
}

// Valid implements validator.
func (p putPoolRequest) Valid(context.Context) map[string]string {
	problems := make(map[string]string)
	if p.ID != nil && !capacity.ValidID(*p.ID) {
		problems["id"] = idProblem
	}
	for name, v := range map[string]string{"region": p.Region, "kind": p.Kind} {
		if !capacity.ValidID(v) {
			problems[name] = "required, 1-64 characters of [A-Za-z0-9_-]"
		}
	}
	starts, startsErr := parseTime(p.StartsAt)
	if startsErr != "" {
		problems["starts_at"] = startsErr
	}
	ends, endsErr := parseTime(p.EndsAt)
	if endsErr != "" {
		problems["ends_at"] = endsErr
	}
	if startsErr == "" && endsErr == "" && !ends.After(starts) {
		problems["ends_at"] = "must be after starts_at"
	}
	switch {
	case p.Capacity == nil:
		problems["capacity"] = "required"
	case *p.Capacity < 0 || *p.Capacity > capacity.MaxCapacity:
		problems["capacity"] = fmt.Sprintf("must be between 0 and %d", capacity.MaxCapacity)
	}
	if p.Overbook != nil && (*p.Overbook < 0 || *p.Overbook > capacity.MaxCapacity) {
		problems["overbook"] = fmt.Sprintf("must be between 0 and %d", capacity.MaxCapacity)
	}
	return problems
}

// command returns the validated request as a command.
func (p putPoolRequest) command(pool string) capacity.DefinePool {
	starts, _ := parseTime(p.StartsAt)
	ends, _ := parseTime(p.EndsAt)
	c := capacity.DefinePool{Pool: pool, Region: p.Region, Kind: p.Kind, StartsAt: starts, EndsAt: ends, Capacity: *p.Capacity}
	if p.Overbook != nil {
		c.Overbook = *p.Overbook
	}
	return c
}

// parseTime parses a required RFC 3339 time, returning a field problem.
func parseTime(s string) (time.Time, string) {
	if s == "" {
		return time.Time{}, "required, an RFC 3339 time"
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, "must be an RFC 3339 time, e.g. 2026-05-01T18:00:00Z"
	}
	return t, ""
}

func handlePutPool(p Pools) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pool, err := idParam(r, "pool")
		if err != nil {
			Error(w, r, err)
			return
		}
		req, err := decode[putPoolRequest](r)
		if err != nil {
			Error(w, r, err)
			return
		}
		if req.ID != nil && *req.ID != pool {
			Error(w, r, invalid("id in body and path differ", map[string]string{"id": "must equal the pool id in the path"}))
			return
		}
		res, err := p.Execute(r.Context(), pool, req.command(pool))
		if err != nil {
			Error(w, r, err)
			return
		}
		status := http.StatusOK
		if res.Written {
			status = http.StatusCreated
			w.Header().Set("Location", "/v1/pools/"+pool)
		}
		encodePool(w, r, status, res.Pool)
	}
}

func handleGetPool(p Pools) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pool, err := idParam(r, "pool")
		if err != nil {
			Error(w, r, err)
			return
		}
		v, err := p.Pool(r.Context(), pool)
		if err != nil {
			Error(w, r, err)
			return
		}
		encodePool(w, r, http.StatusOK, v)
	}
}

// patchPoolRequest reshapes a pool: capacity, overbook, status or several.
type patchPoolRequest struct {
	Capacity *int    `json:"capacity"`
	Overbook *int    `json:"overbook"`
	Status   *string `json:"status"`
}

// Valid implements validator.
func (p patchPoolRequest) Valid(context.Context) map[string]string {
	problems := make(map[string]string)
	if p.Capacity == nil && p.Overbook == nil && p.Status == nil {
		problems["capacity"] = "give capacity, overbook and/or status"
		problems["status"] = "give capacity, overbook and/or status"
	}
	if p.Capacity != nil && (*p.Capacity < 0 || *p.Capacity > capacity.MaxCapacity) {
		problems["capacity"] = fmt.Sprintf("must be between 0 and %d", capacity.MaxCapacity)
	}
	if p.Overbook != nil && (*p.Overbook < 0 || *p.Overbook > capacity.MaxCapacity) {
		problems["overbook"] = fmt.Sprintf("must be between 0 and %d", capacity.MaxCapacity)
	}
	if p.Status != nil && *p.Status != string(capacity.Open) && *p.Status != string(capacity.Closed) {
		problems["status"] = `must be "open" or "closed"`
	}
	return problems
}

// parseIfMatch reads an If-Match header holding one pool version: "7",
// 7 or W/"7". Absent or "*" imposes no version.
func parseIfMatch(h []string) (*uint64, error) {
	if len(h) == 0 {
		return nil, nil
	}
	bad := invalid(`If-Match must hold one pool version, e.g. "7"`, map[string]string{"If-Match": `must be one version, e.g. "7"`})
	if len(h) > 1 {
		return nil, bad
	}
	v := strings.TrimSpace(h[0])
	if v == "*" {
		return nil, nil
	}
	v = strings.TrimPrefix(v, "W/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if v == "" || len(v) > 20 || strings.TrimLeft(v, "0123456789") != "" {
		return nil, bad
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, bad
	}
	return &n, nil
}

func handlePatchPool(p Pools) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pool, err := idParam(r, "pool")
		if err != nil {
			Error(w, r, err)
			return
		}
		ifVersion, err := parseIfMatch(r.Header.Values("If-Match"))
		if err != nil {
			Error(w, r, err)
			return
		}
		req, err := decode[patchPoolRequest](r)
		if err != nil {
			Error(w, r, err)
			return
		}
		cmd := capacity.ChangePool{Capacity: req.Capacity, Overbook: req.Overbook, IfVersion: ifVersion}
		if req.Status != nil {
			cmd.Status = capacity.Status(*req.Status)
		}
		res, err := p.Execute(r.Context(), pool, cmd)
		if err != nil {
			Error(w, r, err)
			return
		}
		encodePool(w, r, http.StatusOK, res.Pool)
	}
}
