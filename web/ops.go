package web

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/capacityd/capacityd/capacity"
	"github.com/go-chi/chi/v5"
)

// OpenAPI is the OpenAPI 3 document of the API, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

func handleOpenAPI() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Content-Length", strconv.Itoa(len(OpenAPI)))
		if r.Method != http.MethodHead {
			_, _ = w.Write(OpenAPI)
		}
	}
}

// statusJSON answers the health routes.
type statusJSON struct {
	Status     string `json:"status"`
	ReadModels any    `json:"read_models,omitempty"`
}

func handleHealthz() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		encode(w, r, http.StatusOK, statusJSON{Status: "ok"})
	}
}

func handleReadyz(ready func() error, detail func(context.Context) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			detail := "the service is not ready to take writes"
			if capacity.ErrorCode(err) != capacity.EINTERNAL {
				detail = capacity.ErrorMessage(err)
			}
			Error(w, r, capacity.Errorf(capacity.EUNAVAILABLE, "%s", detail))
			return
		}
		out := statusJSON{Status: "ready"}
		if detail != nil {
			out.ReadModels = detail(r.Context())
		}
		encode(w, r, http.StatusOK, out)
	}
}

func handleNotFound() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		Error(w, r, capacity.Errorf(capacity.ENOTFOUND, "no route %s %s", r.Method, r.URL.Path))
	}
}

// handleMethodNotAllowed answers 405 with the Allow header chi's own
// handler would send.
func handleMethodNotAllowed(mux *chi.Mux) http.HandlerFunc {
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	return func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, m := range methods {
			if mux.Match(chi.NewRouteContext(), m, r.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		Error(w, r, &requestError{code: codeMethodNotAllowed, detail: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
	}
}
